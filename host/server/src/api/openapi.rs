//! The OpenAPI 3.1 document (`GET /api/v1/openapi.json`), made by utoipa from the handlers' own
//! annotations and the protocol's types. Who may call each route is not written twice: the
//! security each operation needs, and the refusals that go with it, come from the same table of
//! rules the router enforces ([`ROUTES`]).

use std::sync::OnceLock;

use axum::Json;
use axum::http::Method;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{ROUTES, artifacts, audit, deployments, devices, enroll, firmware, groups};
use super::{metrics, plugins, protocol, tokens, users};
use crate::auth::Rule;

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
        plugins::delete,
        deployments::create,
        deployments::list,
        deployments::status,
        deployments::status_again,
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

/// The document, made once.
pub fn document() -> &'static Document {
    static DOCUMENT: OnceLock<Document> = OnceLock::new();
    DOCUMENT.get_or_init(ApiDoc::openapi)
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "system",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")),
)]
pub async fn openapi() -> Json<&'static Document> {
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
                    "Over the credential's rate limit: `Retry-After` says when to try again",
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
        let documented: BTreeSet<(String, String)> = document()
            .paths
            .paths
            .iter()
            .flat_map(|(path, item)| {
                [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter(|(_, present)| *present)
                .map(move |(method, _)| (method.to_string(), path.clone()))
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
        let doc = serde_json::to_value(document()).unwrap();
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
