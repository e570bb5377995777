//! Acting as another service account: the operator's own credentials obtain short-lived tokens for it from IAM
//! Credentials `generateAccessToken` (Google's own client), cached until five minutes before they expire. Google
//! then limits every call to what that account may do, whatever the operator itself holds.

use std::time::{Duration, SystemTime};

use google_cloud_auth::credentials::{CacheableResource, Credentials, CredentialsProvider, EntityTag};
use google_cloud_auth::errors::CredentialsError;
use google_cloud_iam_credentials_v1::client::IAMCredentials;
use http::{Extensions, HeaderMap, HeaderValue};

use crate::error::{Error, Result};

/// The scope of every impersonated token.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long a token is asked for (Google's limit without the organization policy that extends it).
const LIFETIME: Duration = Duration::from_secs(3600);

/// A token is replaced this long before it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The start of the message of a refused impersonation, before the account.
const CANNOT_ACT_AS: &str = "cannot act as ";

/// The account a failed call could not act as, when its message says so (a refused `generateAccessToken`:
/// the source credentials lack `iam.serviceAccounts.getAccessToken` on it, or it does not exist).
pub fn refused_impersonation(message: &str) -> Option<&str> {
    let rest = &message[message.find(CANNOT_ACT_AS)? + CANNOT_ACT_AS.len()..];
    rest.split(':').next().filter(|a| a.contains('@'))
}

/// Tokens for `account`, minted with the source credentials.
#[derive(Debug)]
pub(crate) struct Impersonated {
    client: IAMCredentials,
    account: String,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    header: HeaderValue,
    refresh_at: SystemTime,
    tag: EntityTag,
}

impl Impersonated {
    /// Credentials that act as `account`, minted with `source` through IAM Credentials at `endpoint` (Google's
    /// when `None`).
    pub(crate) async fn credentials(
        source: Credentials,
        account: &str,
        endpoint: Option<String>,
    ) -> Result<Credentials> {
        let mut builder = IAMCredentials::builder().with_credentials(source);
        if let Some(endpoint) = endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let client = builder.build().await.map_err(|source| Error::Client {
            service: "iamcredentials",
            source,
        })?;
        Ok(Credentials::from(Impersonated {
            client,
            account: account.to_owned(),
            cached: tokio::sync::Mutex::new(None),
        }))
    }

    async fn mint(&self) -> std::result::Result<Cached, CredentialsError> {
        let response = self
            .client
            .generate_access_token()
            .set_name(format!("projects/-/serviceAccounts/{}", self.account))
            .set_scope([CLOUD_PLATFORM])
            .set_lifetime(google_cloud_wkt::Duration::clamp(LIFETIME.as_secs() as i64, 0))
            .send()
            .await
            .map_err(|e| {
                let transient = e.http_status_code().is_none_or(|s| s >= 500 || s == 429);
                let why = e
                    .status()
                    .map(|s| s.message.clone())
                    .unwrap_or_else(|| e.to_string());
                CredentialsError::from_msg(transient, format!("cannot act as {}: {why}", self.account))
            })?;
        let expires = response
            .expire_time
            .and_then(|t| u64::try_from(t.seconds()).ok())
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
            .unwrap_or_else(|| SystemTime::now() + LIFETIME);
        let mut header =
            HeaderValue::try_from(format!("Bearer {}", response.access_token)).map_err(|_| {
                CredentialsError::from_msg(false, "the minted access token is not a valid header")
            })?;
        header.set_sensitive(true);
        Ok(Cached {
            header,
            refresh_at: expires
                .checked_sub(REFRESH_MARGIN)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            tag: EntityTag::new(),
        })
    }
}

impl CredentialsProvider for Impersonated {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> std::result::Result<CacheableResource<HeaderMap>, CredentialsError> {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_none_or(|c| c.refresh_at <= SystemTime::now()) {
            *cached = Some(self.mint().await?);
        }
        let Some(current) = cached.as_ref() else {
            return Err(CredentialsError::from_msg(true, "no impersonated token"));
        };
        if extensions.get::<EntityTag>() == Some(&current.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, current.header.clone());
        Ok(CacheableResource::New {
            entity_tag: current.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_impersonation_names_its_account() {
        let message = format!(
            "unauthenticated calling Google for x: {CANNOT_ACT_AS}t@p.iam.gserviceaccount.com: denied"
        );
        assert_eq!(
            refused_impersonation(&message),
            Some("t@p.iam.gserviceaccount.com")
        );
        assert_eq!(
            refused_impersonation("Request had invalid authentication credentials."),
            None
        );
    }
}
