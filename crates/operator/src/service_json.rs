//! The Cloud Run service between Google's client type and its REST JSON shape.

use litellm_operator_gcp::{Service, ServiceName};
use serde_json::Value;

use crate::error::Error;

/// The service in REST JSON shape, with the enums the desired service names (ingress, VPC egress, terminal state,
/// traffic target types)
/// as names: the client's types serialize them as numbers, and a number never equals a name in `drift`.
pub fn to_json(service: &Service, name: &ServiceName) -> Result<Value, Error> {
    let mut json = serde_json::to_value(service).map_err(|e| serialization(name, &e))?;
    if let Some(ingress) = service.ingress.name() {
        json["ingress"] = Value::from(ingress);
    }
    if let Some(egress) = service
        .template
        .as_ref()
        .and_then(|t| t.vpc_access.as_ref())
        .and_then(|v| v.egress.name())
    {
        json["template"]["vpcAccess"]["egress"] = Value::from(egress);
    }
    for (i, target) in service.traffic.iter().enumerate() {
        if let Some(kind) = target.r#type.name() {
            json["traffic"][i]["type"] = Value::from(kind);
        }
    }
    for (i, target) in service.traffic_statuses.iter().enumerate() {
        if let Some(kind) = target.r#type.name() {
            json["trafficStatuses"][i]["type"] = Value::from(kind);
        }
    }
    if let Some(state) = service.terminal_condition.as_ref().and_then(|c| c.state.name()) {
        json["terminalCondition"]["state"] = Value::from(state);
    }
    Ok(json)
}

/// The client type for a REST JSON service.
pub fn from_json(value: Value, name: &ServiceName) -> Result<Service, Error> {
    serde_json::from_value(value).map_err(|e| serialization(name, &e))
}

fn serialization(name: &ServiceName, e: &serde_json::Error) -> Error {
    Error::Serialization {
        resource: name.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::plan::desired::{self, example};
    use crate::plan::desired_state;

    #[test]
    fn the_desired_service_is_a_cloud_run_service_and_round_trips_with_enum_names() {
        let d = desired_state(&example()).unwrap();
        let pins: BTreeMap<String, String> = d
            .secrets
            .iter()
            .map(|s| (s.key().to_owned(), "1".to_owned()))
            .collect();
        let mut body = desired::service(&d, &pins);
        body["traffic"] = json!([{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}]);
        let name = ServiceName::new("my-project", "us-central1", "litellm-proxy");
        let typed = from_json(body, &name).unwrap();
        let template = typed.template.clone().unwrap();
        assert_eq!(
            template.service_account,
            "litellm-run@my-project.iam.gserviceaccount.com"
        );
        assert_eq!(template.containers[0].ports[0].container_port, 4000);
        assert_eq!(template.max_instance_request_concurrency, 80);
        let back = to_json(&typed, &name).unwrap();
        assert_eq!(back["ingress"], "INGRESS_TRAFFIC_ALL");
        assert_eq!(
            back["traffic"][0]["type"],
            "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
        );
    }
}
