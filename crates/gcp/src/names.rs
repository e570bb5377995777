//! Typed resource names, so a secret can never be passed where a service is expected.

use std::fmt;

/// Label key marking resources this operator created.
pub const MANAGED_BY_LABEL: &str = "managed-by";
/// Value of [`MANAGED_BY_LABEL`] on resources this operator created.
pub const MANAGED_BY_VALUE: &str = "litellm-operator";

/// A Secret Manager secret: `projects/{project}/secrets/{secret}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName {
    /// Project id (or number).
    pub project: String,
    /// Secret id, `[A-Za-z0-9_-]{1,255}`.
    pub secret: String,
}

impl SecretName {
    /// Names secret `secret` in `project`.
    pub fn new(project: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            secret: secret.into(),
        }
    }

    /// Parses `projects/P/secrets/S`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.split('/').collect::<Vec<_>>().as_slice() {
            ["projects", p, "secrets", s] if !p.is_empty() && !s.is_empty() => Some(Self::new(*p, *s)),
            _ => None,
        }
    }

    /// `projects/{project}`, the parent for create and list.
    pub fn parent(&self) -> String {
        format!("projects/{}", self.project)
    }

    /// The full name of one version (`latest` or a number).
    pub fn version(&self, version: VersionRef) -> String {
        format!("{self}/versions/{version}")
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "projects/{}/secrets/{}", self.project, self.secret)
    }
}

/// Which version of a secret: a number or the `latest` alias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VersionRef {
    /// The newest enabled version, as Secret Manager resolves it.
    Latest,
    /// A concrete version number (1, 2, ...).
    Number(u64),
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRef::Latest => f.write_str("latest"),
            VersionRef::Number(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for VersionRef {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s == "latest" {
            return Ok(VersionRef::Latest);
        }
        s.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(VersionRef::Number)
            .ok_or(())
    }
}

/// A Cloud Run v2 service: `projects/{project}/locations/{region}/services/{service}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName {
    /// Project id (or number).
    pub project: String,
    /// Region, e.g. `us-central1`.
    pub region: String,
    /// Service id.
    pub service: String,
}

impl ServiceName {
    /// Names service `service` in `project` and `region`.
    pub fn new(project: impl Into<String>, region: impl Into<String>, service: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            region: region.into(),
            service: service.into(),
        }
    }

    /// Parses `projects/P/locations/R/services/S`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.split('/').collect::<Vec<_>>().as_slice() {
            ["projects", p, "locations", r, "services", s]
                if !p.is_empty() && !r.is_empty() && !s.is_empty() =>
            {
                Some(Self::new(*p, *r, *s))
            }
            _ => None,
        }
    }

    /// `projects/{project}/locations/{region}`, the parent for create.
    pub fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.region)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projects/{}/locations/{}/services/{}",
            self.project, self.region, self.service
        )
    }
}

/// A resource whose IAM policy this crate edits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PolicyTarget {
    /// A Secret Manager secret (e.g. `roles/secretmanager.secretAccessor` for the runtime service account).
    Secret(SecretName),
    /// A Cloud Run service (e.g. `roles/run.invoker` for `allUsers`).
    Service(ServiceName),
}

impl PolicyTarget {
    /// The project the resource lives in.
    pub fn project(&self) -> &str {
        match self {
            PolicyTarget::Secret(s) => &s.project,
            PolicyTarget::Service(s) => &s.project,
        }
    }
}

impl fmt::Display for PolicyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyTarget::Secret(s) => s.fmt(f),
            PolicyTarget::Service(s) => s.fmt(f),
        }
    }
}

/// The project of a full resource name (`projects/P/...`), if it has one.
pub(crate) fn project_of(resource: &str) -> Option<&str> {
    let rest = resource.strip_prefix("projects/")?;
    rest.split('/').next().filter(|p| !p.is_empty())
}

/// The version number at the end of `projects/P/secrets/S/versions/N`.
pub(crate) fn version_number(name: &str) -> Option<u64> {
    name.rsplit_once("/versions/")?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn names_round_trip() {
        let s = SecretName::new("p", "database-url");
        assert_eq!(s.to_string(), "projects/p/secrets/database-url");
        assert_eq!(SecretName::parse(&s.to_string()), Some(s.clone()));
        assert_eq!(
            s.version(VersionRef::Number(7)),
            "projects/p/secrets/database-url/versions/7"
        );
        assert_eq!(
            s.version(VersionRef::Latest),
            "projects/p/secrets/database-url/versions/latest"
        );
        let r = ServiceName::new("p", "us-central1", "proxy");
        assert_eq!(r.to_string(), "projects/p/locations/us-central1/services/proxy");
        assert_eq!(ServiceName::parse(&r.to_string()), Some(r.clone()));
        assert_eq!(r.parent(), "projects/p/locations/us-central1");
        assert_eq!(SecretName::parse("projects/p/secrets/"), None);
        assert_eq!(ServiceName::parse("projects/p/secrets/x"), None);
    }

    #[test]
    fn project_and_version_are_extracted() {
        assert_eq!(project_of("projects/my-proj/secrets/x"), Some("my-proj"));
        assert_eq!(project_of("operations/x"), None);
        assert_eq!(version_number("projects/p/secrets/x/versions/12"), Some(12));
        assert_eq!(version_number("projects/p/secrets/x/versions/latest"), None);
        assert_eq!("latest".parse::<VersionRef>(), Ok(VersionRef::Latest));
        assert_eq!("3".parse::<VersionRef>(), Ok(VersionRef::Number(3)));
        assert!("0".parse::<VersionRef>().is_err());
    }

    #[test]
    fn ownership_label_matches_the_api_crate() {
        assert_eq!(MANAGED_BY_LABEL, litellm_operator_api::names::MANAGED_BY_LABEL);
        assert_eq!(MANAGED_BY_VALUE, litellm_operator_api::names::MANAGED_BY_VALUE);
    }
}
