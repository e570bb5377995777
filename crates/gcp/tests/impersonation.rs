//! Acting as another service account against the emulator with permission checks on: tokens come from IAM
//! Credentials `generateAccessToken` (one per hour, not one per call), every call carries the impersonated
//! account's identity, Google's IAM limits it, and a refused impersonation says which account and permission.
#![allow(clippy::unwrap_used, clippy::panic)]

use gcp_emulator::Emulator;
use litellm_operator_gcp::{
    AccessToken, CredentialsSource, Error, Gcp, GcpConfig, RateLimits, SecretName, SecretStore,
};
use prometheus_client::registry::Registry;

const OPERATOR: &str = "serviceAccount:operator@p.iam.gserviceaccount.com";
const TENANT: &str = "tenant-a@p.iam.gserviceaccount.com";

async fn start() -> (Emulator, Gcp) {
    let emu = gcp_emulator::spawn(gcp_emulator::Config {
        enforce_auth: true,
        ..gcp_emulator::Config::default()
    })
    .await
    .unwrap();
    emu.state().seed_service_account(TENANT);
    let token = emu.state().mint_token(OPERATOR).unwrap();
    let config = GcpConfig {
        credentials: CredentialsSource::StaticToken(AccessToken::new(token)),
        rate_limits: RateLimits::unlimited(),
        ..GcpConfig::emulator(emu.url().parse().unwrap())
    };
    let gcp = Gcp::connect(&config, &mut Registry::default()).await.unwrap();
    (emu, gcp)
}

#[tokio::test]
async fn calls_carry_the_impersonated_identity_and_only_its_grants() {
    let (emu, operator) = start().await;
    let state = emu.state();
    // The operator itself may do everything with secrets; the tenant may only read them.
    state.grant_on_project("p", "roles/secretmanager.admin", OPERATOR);
    state.grant_on_project(
        "p",
        "roles/secretmanager.viewer",
        &format!("serviceAccount:{TENANT}"),
    );
    state.grant_on_service_account(TENANT, "roles/iam.serviceAccountTokenCreator", OPERATOR);
    let tenant = operator.impersonating(TENANT).await.unwrap();

    let name = SecretName::new("p", "s");
    operator.create_secret(&name, &Default::default()).await.unwrap();
    state.reset_calls();
    for _ in 0..3 {
        assert!(tenant.find_secret(&name).await.unwrap().is_some());
    }
    let other = SecretName::new("p", "t");
    let refused = tenant
        .create_secret(&other, &Default::default())
        .await
        .unwrap_err();
    match &refused {
        Error::PermissionDenied { permission, .. } => {
            assert_eq!(permission.as_deref(), Some("secretmanager.secrets.create"));
        }
        other => panic!("{other:?}"),
    }
    let log = state.requests();
    let minted = log
        .iter()
        .filter(|r| r.method == "IAMCredentials.GenerateAccessToken")
        .count();
    assert_eq!(minted, 1, "one token for four calls: {log:?}");
    let tenant_calls: Vec<&str> = log
        .iter()
        .filter(|r| r.method.starts_with("SecretManagerService."))
        .map(|r| r.caller.as_str())
        .collect();
    assert_eq!(tenant_calls, vec![format!("serviceAccount:{TENANT}").as_str(); 4]);
    assert!(
        log.iter()
            .filter(|r| r.method == "IAMCredentials.GenerateAccessToken")
            .all(|r| r.caller == OPERATOR),
        "{log:?}"
    );
    // The operator's own handle is still the operator.
    assert!(operator.find_secret(&other).await.unwrap().is_none());
}

#[tokio::test]
async fn a_refused_impersonation_names_the_account_and_the_permission() {
    let (emu, operator) = start().await;
    emu.state()
        .grant_on_project("p", "roles/secretmanager.admin", OPERATOR);
    let tenant = operator.impersonating(TENANT).await.unwrap();
    let err = tenant.find_secret(&SecretName::new("p", "s")).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err:?}");
    assert!(text.contains(&format!("cannot act as {TENANT}")), "{text}");
    assert!(text.contains("iam.serviceAccounts.getAccessToken"), "{text}");
    // No secret call reached Google without a token.
    assert_eq!(emu.state().call_count("SecretManagerService.GetSecret"), 0);
}
