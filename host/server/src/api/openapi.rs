//! The OpenAPI 3.1 document (`GET /api/v1/openapi.json`), made by utoipa from the handlers' own
//! annotations and the protocol's types. Who may call each route is not written twice: the
//! security each operation needs, and the refusals that go with it, come from the same table of
//! rules the router enforces ([`ROUTES`]).

use std::sync::OnceLock;

use axum::Json;
use axum::http::Method;
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::auth::Rule;
use super::{ROUTES, artifacts, audit, deployments, devices, enroll, firmware, groups};
use super::{metrics, plugins, protocol, tokens, users};
use hotswap_protocol::routes;

/// The security schemes, by the names the document gives them.
pub const OPERATOR_SCHEME: &str = "operatorToken";
pub const DEVICE_SCHEME: &str = "deviceToken";
pub const DEVICE_CERTIFICATE_SCHEME: &str = "deviceCertificate";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "HotSwap",
        description = "Programmable, safe rollouts of WebAssembly agents to IoT fleets: the operator API and the device protocol. Every error is `{\"error\": {\"status\", \"message\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        metrics::healthz,
        metrics::scrape,
        openapi,
        firmware::register,
        firmware::list,
        firmware::get,
        firmware::deprecate,
        firmware::sunset,
        devices::register,
        devices::summary,
        devices::list,
        devices::register_batch,
        devices::get,
        devices::lineage,
        enroll::accept,
        enroll::reject,
        enroll::decommission,
        enroll::enroll,
        enroll::claim_token,
        groups::create,
        groups::list,
        groups::get,
        plugins::upload,
        plugins::list,
        plugins::limits,
        plugins::delete,
        deployments::create,
        deployments::list,
        deployments::get,
        deployments::status,
        deployments::decisions,
        deployments::approve,
        deployments::deny,
        deployments::pause,
        deployments::resume,
        deployments::cancel,
        deployments::rollback,
        tokens::create,
        tokens::list,
        tokens::revoke,
        audit::list,
        users::login,
        users::change_password,
        users::create,
        users::list,
        users::disable,
        protocol::check_in,
        protocol::report,
        protocol::report_batch,
        artifacts::artifact,
    ),
    components(schemas(
        hotswap_protocol::ErrorBody,
        hotswap_protocol::DeviceStatus,
        hotswap_protocol::FirmwareStatus,
    )),
    modifiers(&Rules),
    tags(
        (name = "firmware", description = "Signed agent versions"),
        (name = "devices", description = "The fleet"),
        (name = "enrollment", description = "Devices that enroll themselves"),
        (name = "groups", description = "Static and dynamic device groups"),
        (name = "plugins", description = "Rollout strategies and health policies"),
        (name = "deployments", description = "Rollouts, their waves and verdicts"),
        (name = "tokens", description = "Operators' API tokens"),
        (name = "users", description = "Users and sign-in"),
        (name = "audit", description = "Who did what"),
        (name = "device-protocol", description = "What devices call"),
        (name = "system", description = "Liveness, metrics and this document"),
    ),
)]
pub struct ApiDoc;

/// The document, made once: utoipa's, with the limits the handlers enforce written into its
/// schemas ([`constraints`]).
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document is JSON");
        constraints(&mut doc);
        doc
    })
}

/// Merges `fields` into the schema of `property` of the component schema `schema`.
fn constrain(doc: &mut Value, schema: &str, property: &str, fields: Value) {
    let target = doc
        .pointer_mut(&format!(
            "/components/schemas/{schema}/properties/{property}"
        ))
        .unwrap_or_else(|| panic!("the document has no {schema}.{property}"));
    merge(target, fields);
}

/// Merges `fields` into the schema of the parameter `name` of every operation on `path` and
/// on the paths under it that have one.
fn constrain_parameter(doc: &mut Value, path: &str, name: &str, fields: Value) {
    let mut found = false;
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for (p, item) in paths.iter_mut() {
        if p != path && !p.starts_with(&format!("{path}/")) {
            continue;
        }
        for operation in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            let parameters = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut);
            for parameter in parameters.into_iter().flatten() {
                if parameter["name"] == name {
                    merge(&mut parameter["schema"], fields.clone());
                    found = true;
                }
            }
        }
    }
    assert!(found, "no operation on {path} has a parameter `{name}`");
}

fn merge(target: &mut Value, fields: Value) {
    if let (Some(target), Value::Object(fields)) = (target.as_object_mut(), fields) {
        target.extend(fields);
    }
}

/// The limits the handlers check, in the schemas, so a client generated from the document (and
/// the fuzzer) knows them: each value comes from the constant the handler uses.
fn constraints(doc: &mut Value) {
    use hotswap_protocol::DeviceState;
    use hotswap_protocol::deployments::{
        DEVICE_TIMEOUT_SECONDS, MAX_ATTEMPTS, RETRY_BACKOFF_SECONDS,
    };
    use strum::VariantArray;
    constrain(doc, "GroupCreation", "devices", json!({"minItems": 1}));
    for property in ["config", "healthConfig"] {
        constrain(
            doc,
            "DeploymentRequest",
            property,
            json!({"type": ["object", "null"]}),
        );
    }
    // The bytes travel in the body: `binaryUrl` is refused with a message saying so.
    let firmware = &mut doc["components"]["schemas"]["FirmwareRegistration"];
    if let Some(properties) = firmware["properties"].as_object_mut() {
        properties.remove("binaryUrl");
    }
    if let Some(required) = firmware["required"].as_array_mut() {
        required.push(json!("binary"));
    }
    constrain(
        doc,
        "FirmwareRegistration",
        "binary",
        json!({"type": "string", "contentEncoding": "base64"}),
    );
    constrain(
        doc,
        "DeviceBatch",
        "devices",
        json!({"minItems": 1, "maxItems": super::MAX_BATCH}),
    );
    constrain(
        doc,
        "ReportBatch",
        "reports",
        json!({"minItems": 1, "maxItems": hotswap_protocol::device_protocol::MAX_BATCH_REPORTS}),
    );
    let reportable: Vec<&str> = DeviceState::VARIANTS
        .iter()
        .filter(|s| s.reportable())
        .map(|s| <&str>::from(*s))
        .collect();
    // Devices report the states from `downloading` on: the schema says which.
    *doc.pointer_mut("/components/schemas/Report/properties/state")
        .expect("the document has Report.state") = json!({"type": "string", "enum": reportable});
    for (property, bounds) in [
        ("deviceTimeoutSeconds", DEVICE_TIMEOUT_SECONDS),
        ("maxAttempts", MAX_ATTEMPTS),
        ("retryBackoffSeconds", RETRY_BACKOFF_SECONDS),
    ] {
        constrain(
            doc,
            "DeploymentRequest",
            property,
            json!({"minimum": bounds.min, "maximum": bounds.max}),
        );
    }
    constrain(
        doc,
        "TokenRequest",
        "expiresInDays",
        json!({"minimum": 1, "maximum": tokens::MAX_TOKEN_DAYS}),
    );
    let new_password = json!({
        "minLength": crate::sessions::MIN_PASSWORD_CHARS,
        "maxLength": hotswap_protocol::MAX_PASSWORD_CHARS,
    });
    let any_password = json!({"maxLength": hotswap_protocol::MAX_PASSWORD_CHARS});
    for (schema, property, constraint) in [
        ("UserRequest", "password", &new_password),
        ("PasswordChange", "newPassword", &new_password),
        ("PasswordChange", "password", &any_password),
        ("LoginRequest", "password", &any_password),
    ] {
        constrain(doc, schema, property, constraint.clone());
    }
    // serde flattens the registration into the enrollment; utoipa's allOf of two closed objects
    // would admit no body at all, so the enrollment is written out as the one object it is.
    let registration = doc["components"]["schemas"]["DeviceRegistration"].clone();
    let enrollment = &mut doc["components"]["schemas"]["Enrollment"];
    let extra: Vec<Value> = enrollment["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|part| part.get("$ref").is_none())
        .cloned()
        .collect();
    let mut flat = registration;
    for part in extra {
        if let (Some(props), Some(more)) = (
            flat["properties"].as_object_mut(),
            part["properties"].as_object(),
        ) {
            props.extend(more.clone());
        }
        if let (Some(required), Some(more)) =
            (flat["required"].as_array_mut(), part["required"].as_array())
        {
            required.extend(more.iter().cloned());
        }
    }
    flat["description"] = enrollment["description"].clone();
    *enrollment = flat;
    constrain_parameter(
        doc,
        routes::CHECK_IN,
        "wait",
        json!({"maximum": hotswap_protocol::device_protocol::MAX_WAIT_SECONDS}),
    );
    for (path, max) in [
        (routes::DEVICES, super::MAX_PAGE),
        (routes::AUDIT, hotswap_store::MAX_AUDIT_PAGE),
        (
            routes::DEPLOYMENT_DECISIONS,
            hotswap_protocol::deployments::MAX_DECISIONS,
        ),
    ] {
        constrain_parameter(doc, path, "limit", json!({"minimum": 1, "maximum": max}));
    }
    for path in [
        routes::FIRMWARE_VERSION,
        routes::DEPLOYMENT,
        routes::TOKEN_REVOKE,
    ] {
        constrain_parameter(
            doc,
            path,
            "id",
            json!({"type": "integer", "format": "int64"}),
        );
    }
}

#[utoipa::path(
    get,
    path = routes::OPENAPI,
    operation_id = "openapi",
    tag = "system",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")),
)]
pub async fn openapi() -> Json<&'static Value> {
    Json(document())
}

/// Adds to every operation the security its rule asks and the answers every route of its kind
/// may give: refusals of the credential, of the rate limit, of the body, and the server's own
/// failures.
struct Rules;

impl Modify for Rules {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            OPERATOR_SCHEME.into(),
            RefOr::T(SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An operator's API token (`hsk_...`, from `hotswap tokens create`) or a session token from `POST /api/v1/auth/login`; its role decides what it may do",
                    ))
                    .build(),
            )),
        );
        components.security_schemes.insert(
            DEVICE_SCHEME.into(),
            RefOr::T(SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A device's own token (`hsd_...`), given at registration or claimed after enrollment",
                    ))
                    .build(),
            )),
        );
        components.security_schemes.insert(
            DEVICE_CERTIFICATE_SCHEME.into(),
            RefOr::T(SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate signed by the server's `tls-client-ca`, whose subject CN or a DNS SAN is the device's id".into(),
                ),
                deprecated: None,
                extensions: None,
            }),
        );
        for route in ROUTES {
            let Some(item) = doc.paths.paths.get_mut(route.path) else {
                continue;
            };
            let operation = match route.method {
                Method::GET => item.get.as_mut(),
                Method::POST => item.post.as_mut(),
                Method::DELETE => item.delete.as_mut(),
                _ => None,
            };
            let Some(operation) = operation else {
                continue;
            };
            let responses = &mut operation.responses.responses;
            let mut answer = |status: u16, description: &str| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(error(description)));
            };
            let credential = match route.rule {
                Rule::Open | Rule::Login | Rule::Enroll => None,
                Rule::Operator(permission) => Some((
                    vec![SecurityRequirement::new(
                        OPERATOR_SCHEME,
                        Vec::<String>::new(),
                    )],
                    format!("The credential's role lacks the `{permission}` permission"),
                )),
                Rule::Device | Rule::Artifact => Some((
                    vec![
                        SecurityRequirement::new(DEVICE_SCHEME, Vec::<String>::new()),
                        SecurityRequirement::new(DEVICE_CERTIFICATE_SCHEME, Vec::<String>::new()),
                    ],
                    "The credential is another device's, or the device is not in the fleet"
                        .to_string(),
                )),
            };
            if let Some((security, forbidden)) = credential {
                operation.security = Some(security);
                answer(
                    401,
                    "No credential, or one that is malformed, unknown or expired",
                );
                answer(403, &forbidden);
                answer(
                    429,
                    "Over the credential's rate limit or its requests in flight, or, for a refused credential, the client address's rate: `Retry-After` says when to try again",
                );
            }
            if operation.request_body.is_some() {
                answer(400, "The body is malformed or names what is wrong with it");
                answer(413, "The body is over the server's limit");
                answer(415, "The body is not of the content type the route takes");
            }
            if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                answer(400, "A path or query parameter is malformed");
            }
            answer(
                500,
                "The server's own failure: its log has the detail under the error id",
            );
            answer(
                503,
                "The server could not take it now; nothing was kept, try again",
            );
        }
    }
}

/// An error answer with the error schema.
fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_has_every_route_of_the_router_and_no_other() {
        let documented: BTreeSet<(String, String)> = document()["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        assert_eq!(
            documented.difference(&routed).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented but not routed"
        );
        assert_eq!(
            routed.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "routed but not documented"
        );
    }

    #[test]
    fn every_operation_needs_the_credential_its_rule_asks() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        for route in ROUTES {
            let operation = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            let schemes: Vec<&str> = operation["security"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                        .collect()
                })
                .unwrap_or_default();
            let expected: &[&str] = match route.rule {
                Rule::Open | Rule::Login | Rule::Enroll => &[],
                Rule::Operator(_) => &[OPERATOR_SCHEME],
                Rule::Device | Rule::Artifact => &[DEVICE_SCHEME, DEVICE_CERTIFICATE_SCHEME],
            };
            assert_eq!(schemes, expected, "{} {}", route.method, route.path);
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("500"),
                "{} {}",
                route.method,
                route.path
            );
            if !expected.is_empty() {
                for status in ["401", "403", "429"] {
                    assert_eq!(
                        responses[status]["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{} {} {status}",
                        route.method,
                        route.path
                    );
                }
            }
        }
    }
}
