//! The keys and certificates one throw-away control plane needs, generated fresh for every start.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// PEM-encoded material written to the control plane's directory.
pub(crate) struct Pki {
    /// The CA that signed both the serving and the admin certificate; the API server trusts it
    /// for client certificates and the kubeconfig trusts it for the server.
    pub ca_cert: String,
    pub serving_cert: String,
    pub serving_key: String,
    /// A client certificate for `admin` in `system:masters`, which RBAC's bootstrap policy binds to
    /// `cluster-admin`.
    pub admin_cert: String,
    pub admin_key: String,
    /// The key pair the API server signs and verifies service-account tokens with.
    pub service_account_key: String,
    pub service_account_public_key: String,
}

fn cert_error(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Certificate { what, source }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        dn.push(DnType::OrganizationName, organization);
    }
    dn
}

impl Pki {
    pub(crate) fn generate() -> Result<Self> {
        let ca_key = KeyPair::generate().map_err(cert_error("CA key"))?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error("CA"))?;
        ca_params.distinguished_name = name("litellm-operator-tests-ca", None);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_error("CA"))?;
        let ca = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate().map_err(cert_error("serving key"))?;
        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])
        .map_err(cert_error("serving certificate"))?;
        serving.distinguished_name = name("kube-apiserver", None);
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving
            .signed_by(&serving_key, &ca)
            .map_err(cert_error("serving certificate"))?;

        let admin_key = KeyPair::generate().map_err(cert_error("admin key"))?;
        let mut admin =
            CertificateParams::new(Vec::<String>::new()).map_err(cert_error("admin certificate"))?;
        admin.distinguished_name = name("admin", Some("system:masters"));
        admin.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin
            .signed_by(&admin_key, &ca)
            .map_err(cert_error("admin certificate"))?;

        let service_account = KeyPair::generate().map_err(cert_error("service-account key"))?;

        Ok(Self {
            ca_cert: ca_cert.pem(),
            serving_cert: serving_cert.pem(),
            serving_key: serving_key.serialize_pem(),
            admin_cert: admin_cert.pem(),
            admin_key: admin_key.serialize_pem(),
            service_account_key: service_account.serialize_pem(),
            service_account_public_key: service_account.public_key_pem(),
        })
    }
}
