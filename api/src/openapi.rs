//! `GET /api/v1/openapi.json`: an OpenAPI 3.1 description of every route,
//! built with `utoipa` from the route table itself (`crate::routes`), so a
//! route cannot exist without being described.
//!
//! From the table each operation gets its path parameters, who may call it
//! (as security requirements: a bearer token, the `?token=` of players and
//! browsers, the SMS gateway's `?key=`), what it answers (JSON, HTML pages,
//! MP4, JPEG, HLS, Prometheus text, server-sent events, redirects) and the
//! one error answer (`{"error": {"code", "message"}}`) with every status
//! the API uses. The query parameters the handlers read are listed in
//! [`QUERY`]; the JSON bodies in `BODIES`, their schemas derived
//! (`utoipa::ToSchema`) from the types the handlers read (422 for a body
//! that does not match); the JSON answers in `ANSWERS`, from the types the
//! handlers answer (a test fails for a route answering JSON without one).
//! Only this document itself is JSON without a schema.
//!
//! The test suite runs Schemathesis against a running server with this
//! document (`tests/openapi_schemathesis.rs`): every answer must match it,
//! and no request may get a 5xx.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OneOfBuilder, OpenApi,
    OpenApiBuilder, Paths, Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder, Schema, Type,
};
use utoipa::ToSchema;

use crate::access::{Access, RouteSpec};

/// Query parameters a route reads: route path, name, type (`integer` or
/// `string`), required.
pub const QUERY: &[(&str, &str, &str, bool)] = &[
    ("/api/v1/assets", "limit", "integer", false),
    ("/api/v1/assets/{id}/frame", "t_ms", "integer", true),
    ("/api/v1/sms/inbound", "from", "string", false),
    ("/api/v1/sms/inbound", "text", "string", false),
    ("/api/v1/sms/dlr", "delivery", "integer", true),
    ("/api/v1/sms/dlr", "part", "integer", true),
    ("/api/v1/sms/dlr", "type", "integer", true),
    ("/s/{token}", "t", "string", false),
    ("/oembed", "url", "string", true),
    ("/api/v1/handoff/{id}", "exp", "string", false),
    ("/api/v1/handoff/{id}", "sig", "string", false),
    ("/api/v1/webhooks/{id}/replay", "from", "string", true),
    (
        "/api/v1/admin/webhook-deliveries",
        "status",
        "string",
        false,
    ),
    (
        "/api/v1/admin/webhook-deliveries",
        "limit",
        "integer",
        false,
    ),
];

/// The schema of a body (a request's or an answer's): registers it (and
/// the schemas it refers to) in `components` and answers a reference to it.
type SchemaOf = fn(&mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema>;

fn schema_of<T: ToSchema>(components: &mut Vec<(String, RefOr<Schema>)>) -> RefOr<Schema> {
    T::schemas(components);
    components.push((T::name().into_owned(), T::schema()));
    Ref::from_schema_name(T::name()).into()
}

/// The JSON body each route takes, from the type its handler reads.
/// Other POST routes take none, or an optional object (documented in
/// `docs/http-api.md`).
const BODIES: &[(&str, &str, SchemaOf)] = &[
    (
        "POST",
        "/api/v1/publishing-keys",
        schema_of::<crate::keys::NewKey>,
    ),
    (
        "POST",
        "/api/v1/shares",
        schema_of::<sharecast_share::NewShare>,
    ),
    (
        "POST",
        "/api/v1/subscriptions",
        schema_of::<sharecast_share::NewSubscription>,
    ),
    (
        "POST",
        "/api/v1/stills",
        schema_of::<sharecast_share::StillRequest>,
    ),
    (
        "POST",
        "/api/v1/users",
        schema_of::<crate::resume::UserRequest>,
    ),
    (
        "POST",
        "/api/v1/terminals",
        schema_of::<crate::resume::TerminalRequest>,
    ),
    (
        "POST",
        "/api/v1/history",
        schema_of::<sharecast_resume::Stop>,
    ),
    (
        "POST",
        "/api/v1/resume",
        schema_of::<crate::resume::ResumeRequest>,
    ),
    (
        "POST",
        "/api/v1/bookmarks/{id}/resume",
        schema_of::<crate::resume::OnTerminal>,
    ),
    (
        "POST",
        "/api/v1/reverse-bookmark",
        schema_of::<sharecast_resume::ReverseBookmark>,
    ),
    (
        "POST",
        "/api/v1/handoff",
        schema_of::<crate::resume::HandoffRequest>,
    ),
    (
        "POST",
        "/api/v1/handoff/{id}/push",
        schema_of::<crate::resume::PushRequest>,
    ),
    (
        "POST",
        "/api/v1/handoff/receive",
        schema_of::<sharecast_resume::Received>,
    ),
    (
        "POST",
        "/api/v1/handoff/accept",
        schema_of::<crate::resume::AcceptRequest>,
    ),
    (
        "POST",
        "/api/v1/transcodes",
        schema_of::<crate::resume::TranscodeRequest>,
    ),
    (
        "POST",
        "/api/v1/webhooks",
        schema_of::<crate::webhooks::NewEndpoint>,
    ),
    (
        "POST",
        "/api/v1/live/{id}/heartbeat",
        schema_of::<sharecast_formats::status::HeartbeatBody>,
    ),
];

/// The JSON answer of each route on success, from the type its handler
/// answers. Routes not listed answer no JSON, but `/api/v1/openapi.json`.
const ANSWERS: &[(&str, &str, SchemaOf)] = &[
    ("GET", "/api/v1/health", schema_of::<crate::http::Health>),
    ("GET", "/api/v1/assets", schema_of::<crate::http::AssetList>),
    (
        "GET",
        "/api/v1/assets/{id}",
        schema_of::<sharecast_store::Asset>,
    ),
    (
        "POST",
        "/api/v1/publishing-keys",
        schema_of::<crate::keys::CreatedKey>,
    ),
    (
        "GET",
        "/api/v1/publishing-keys",
        schema_of::<crate::keys::Keys>,
    ),
    (
        "POST",
        "/api/v1/users",
        schema_of::<sharecast_resume::NewUser>,
    ),
    (
        "POST",
        "/api/v1/terminals",
        schema_of::<sharecast_resume::NewTerminal>,
    ),
    (
        "POST",
        "/api/v1/history",
        schema_of::<sharecast_resume::Stopped>,
    ),
    (
        "GET",
        "/api/v1/history",
        schema_of::<crate::resume::HistoryList>,
    ),
    (
        "GET",
        "/api/v1/catalogue",
        schema_of::<sharecast_resume::Catalogue>,
    ),
    (
        "POST",
        "/api/v1/resume",
        schema_of::<sharecast_resume::ResumeAnswer>,
    ),
    (
        "GET",
        "/api/v1/bookmarks",
        schema_of::<crate::resume::BookmarkList>,
    ),
    (
        "POST",
        "/api/v1/bookmarks/{id}/resume",
        schema_of::<sharecast_resume::BookmarkPlay>,
    ),
    (
        "POST",
        "/api/v1/reverse-bookmark",
        schema_of::<sharecast_resume::ReverseBookmarkAnswer>,
    ),
    (
        "POST",
        "/api/v1/handoff",
        schema_of::<sharecast_resume::HandoffCreated>,
    ),
    (
        "GET",
        "/api/v1/handoff/{id}",
        schema_of::<sharecast_resume::SuspendState>,
    ),
    (
        "GET",
        "/api/v1/handoff/by-code/{code}",
        schema_of::<sharecast_resume::SuspendState>,
    ),
    (
        "POST",
        "/api/v1/handoff/{id}/push",
        schema_of::<sharecast_resume::Pushed>,
    ),
    (
        "POST",
        "/api/v1/handoff/receive",
        schema_of::<sharecast_resume::Bookmark>,
    ),
    (
        "GET",
        "/api/v1/handoff/accept",
        schema_of::<sharecast_resume::Accepted>,
    ),
    (
        "POST",
        "/api/v1/handoff/accept",
        schema_of::<sharecast_resume::Bookmark>,
    ),
    (
        "POST",
        "/api/v1/transcodes",
        schema_of::<crate::resume::TranscodeAnswer>,
    ),
    (
        "GET",
        "/api/v1/transcodes/{id}",
        schema_of::<sharecast_resume::TranscodeJob>,
    ),
    (
        "GET",
        "/api/v1/fetches/{id}",
        schema_of::<sharecast_resume::FetchJob>,
    ),
    (
        "POST",
        "/api/v1/shares",
        schema_of::<sharecast_share::CreatedShare>,
    ),
    ("GET", "/api/v1/shares", schema_of::<crate::shares::Shares>),
    (
        "GET",
        "/api/v1/shares/{id}",
        schema_of::<crate::shares::ShareWithDeliveries>,
    ),
    (
        "GET",
        "/api/v1/shares/{id}/deliveries",
        schema_of::<crate::shares::Deliveries>,
    ),
    (
        "DELETE",
        "/api/v1/shares/{id}",
        schema_of::<crate::shares::OneShare>,
    ),
    (
        "POST",
        "/api/v1/live/{id}/playback-tokens",
        schema_of::<sharecast_share::LivePlayback>,
    ),
    (
        "POST",
        "/api/v1/subscriptions",
        schema_of::<sharecast_store::Subscription>,
    ),
    (
        "GET",
        "/api/v1/subscriptions",
        schema_of::<crate::shares::Subscriptions>,
    ),
    (
        "DELETE",
        "/api/v1/subscriptions/{recipient}",
        schema_of::<sharecast_store::Subscription>,
    ),
    (
        "POST",
        "/api/v1/stills",
        schema_of::<sharecast_share::Still>,
    ),
    ("GET", "/oembed", schema_of::<sharecast_share::Oembed>),
    (
        "POST",
        "/api/v1/webhooks",
        schema_of::<crate::webhooks::CreatedEndpoint>,
    ),
    (
        "GET",
        "/api/v1/webhooks",
        schema_of::<crate::webhooks::Endpoints>,
    ),
    (
        "POST",
        "/api/v1/webhooks/{id}/replay",
        schema_of::<crate::webhooks::Replayed>,
    ),
    (
        "GET",
        "/api/v1/admin/webhook-deliveries",
        schema_of::<crate::webhooks::Deliveries>,
    ),
    (
        "GET",
        "/api/v1/sessions",
        schema_of::<crate::http::SessionList>,
    ),
    (
        "POST",
        "/api/v1/live/{id}/heartbeat",
        schema_of::<sharecast_formats::status::HeartbeatAnswer>,
    ),
    (
        "GET",
        "/api/v1/admin/overview",
        schema_of::<crate::admin::Overview>,
    ),
    (
        "GET",
        "/api/v1/admin/routes",
        schema_of::<crate::routes::RouteTable>,
    ),
    (
        "GET",
        "/api/v1/admin/{what}",
        schema_of::<crate::admin::AdminList>,
    ),
    (
        "POST",
        "/api/v1/admin/sessions/{id}/end",
        schema_of::<crate::admin::Ended>,
    ),
    (
        "POST",
        "/api/v1/admin/viewers/{id}/kick",
        schema_of::<crate::admin::Kicked>,
    ),
];

/// Every status an error answer may have.
const ERROR_STATUSES: &[(&str, &str)] = &[
    (
        "400",
        "bad request (a parameter or field that does not parse or is out of range)",
    ),
    ("401", "no credential, or one that is not valid"),
    ("403", "a valid credential that may not do this"),
    ("404", "unknown"),
    ("405", "method not allowed"),
    (
        "409",
        "not in a state that allows it (a recording not ready)",
    ),
    ("410", "expired"),
    ("413", "body too large"),
    ("415", "body of the wrong type"),
    ("416", "range not satisfiable"),
    ("422", "body that does not match the expected fields"),
    ("429", "too many attempts"),
    ("501", "a feature this server was started without"),
    ("503", "busy, or not ready yet (with Retry-After)"),
];

/// Routes whose DELETE answers 204 No Content.
const NO_CONTENT: &[&str] = &["/api/v1/publishing-keys/{id}", "/api/v1/webhooks/{id}"];

/// What a route answers on success: status keys and content type (none
/// for an empty answer).
fn success(spec: &RouteSpec) -> (&'static [&'static str], &'static str) {
    let p = spec.path;
    if p.ends_with("/redirect") {
        return (&["3XX"], "text/plain");
    }
    // Deletions that answer 204 without a body.
    if spec.method == "DELETE" && NO_CONTENT.contains(&p) {
        return (&["204"], "");
    }
    let ok: &'static [&'static str] = &["2XX"];
    let kind = if spec.page || p == "/watch/{id}" {
        "text/html"
    } else if p.starts_with("/vod/") {
        return (&["200", "206"], "video/mp4");
    } else if p.ends_with("/frame") || p.ends_with(".jpg") || p.starts_with("/api/v1/stills/{id}/")
    {
        "image/jpeg"
    } else if p == "/metrics" || p.starts_with("/api/v1/sms/") {
        "text/plain"
    } else if p == "/api/v1/admin/events" {
        "text/event-stream"
    } else if p.starts_with("/live/") {
        "*/*"
    } else if p.ends_with(".js") {
        "text/javascript"
    } else if p.ends_with(".css") {
        "text/css"
    } else {
        "application/json"
    };
    (ok, kind)
}

/// The security requirements of a rule (empty: none). An empty
/// requirement in the list makes the others optional.
fn security(access: Access) -> Vec<SecurityRequirement> {
    let bearer = || SecurityRequirement::new("bearer", Vec::<String>::new());
    let query = || SecurityRequirement::new("token_query", Vec::<String>::new());
    match access {
        Access::Public | Access::Capability | Access::SignedLink | Access::BodyTokens => vec![],
        Access::Device | Access::DeviceOrAdmin | Access::AssetOwner | Access::User => {
            vec![bearer()]
        }
        Access::Admin | Access::LiveViewer => vec![bearer(), query()],
        Access::AssetViewer => vec![SecurityRequirement::default(), bearer(), query()],
        Access::SmsGateway => vec![SecurityRequirement::new("sms_key", Vec::<String>::new())],
    }
}

fn method(m: &str) -> Option<HttpMethod> {
    Some(match m {
        "GET" => HttpMethod::Get,
        "POST" => HttpMethod::Post,
        "DELETE" => HttpMethod::Delete,
        "HEAD" => HttpMethod::Head,
        "PUT" => HttpMethod::Put,
        "PATCH" => HttpMethod::Patch,
        _ => return None,
    })
}

fn typed(t: &str) -> Schema {
    let ty = if t == "integer" {
        Type::Integer
    } else {
        Type::String
    };
    ObjectBuilder::new().schema_type(ty).into()
}

/// `getApiV1AssetsId`-style id of an operation.
fn operation_id(spec: &RouteSpec) -> String {
    let mut id = spec.method.to_lowercase();
    for word in spec.path.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(chars);
        }
    }
    id
}

/// The operation of one route.
fn operation(
    spec: &RouteSpec,
    components: &mut Vec<(String, RefOr<Schema>)>,
) -> utoipa::openapi::path::Operation {
    let tag = spec
        .path
        .trim_start_matches("/api/v1/")
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id(spec)))
        .tag(tag)
        .description(Some(format!(
            "Who may call it: `{}` (docs/security.md).",
            spec.access.name()
        )))
        .securities(Some(security(spec.access)));
    for name in spec
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
    {
        op = op.parameter(
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(typed("string"))),
        );
    }
    for (_, name, ty, required) in QUERY.iter().filter(|q| q.0 == spec.path) {
        let required = if *required {
            Required::True
        } else {
            Required::False
        };
        op = op.parameter(
            ParameterBuilder::new()
                .name(*name)
                .parameter_in(ParameterIn::Query)
                .required(required)
                .schema(Some(typed(ty))),
        );
    }
    let json_body = spec.method == "POST"
        && spec.path.starts_with("/api/")
        && spec.path != "/api/v1/sms/inbound";
    let typed = BODIES
        .iter()
        .find(|(m, p, _)| *m == spec.method && *p == spec.path);
    let (schema, required): (RefOr<Schema>, _) = match typed {
        Some((_, _, schema)) => (schema(components), Required::True),
        None => (
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .build()
                .into(),
            Required::False,
        ),
    };
    if json_body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema)).build(),
                )
                .required(Some(required))
                .build(),
        ));
    }
    op.responses(responses(spec, components)).build()
}

/// Routes whose refusals are their interface's own answer, besides the
/// error answer: the reverse-bookmark interface answers its result codes.
const OWN_REFUSALS: &[(&str, SchemaOf)] = &[(
    "/api/v1/reverse-bookmark",
    schema_of::<sharecast_resume::ReverseBookmarkAnswer>,
)];

fn responses(
    spec: &RouteSpec,
    components: &mut Vec<(String, RefOr<Schema>)>,
) -> utoipa::openapi::Responses {
    let error: RefOr<Schema> = match OWN_REFUSALS.iter().find(|(p, _)| *p == spec.path) {
        Some((_, own)) => OneOfBuilder::new()
            .item(Ref::from_schema_name("Error"))
            .item(own(components))
            .into(),
        None => Ref::from_schema_name("Error").into(),
    };
    let (codes, kind) = success(spec);
    let mut r = ResponsesBuilder::new();
    let answer = ANSWERS
        .iter()
        .find(|(m, p, _)| *m == spec.method && *p == spec.path)
        .map(|(_, _, schema)| schema(components));
    for code in codes {
        let content = ContentBuilder::new().schema(answer.clone()).build();
        let mut answer = ResponseBuilder::new().description("success");
        if spec.method != "HEAD" && !kind.is_empty() {
            answer = answer.content(kind, content);
        }
        r = r.response(*code, answer.build());
    }
    for (code, why) in ERROR_STATUSES {
        let error = ContentBuilder::new().schema(Some(error.clone())).build();
        let mut answer = ResponseBuilder::new().description(*why);
        if spec.method != "HEAD" {
            answer = answer.content("application/json", error);
            if spec.page {
                answer = answer.content("text/html", ContentBuilder::new().build());
            }
        }
        r = r.response(*code, answer.build());
    }
    r.build()
}

/// The error answer's schema.
fn error_schema() -> Schema {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let inner = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("code", text())
        .property("message", text())
        .required("code")
        .required("message");
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("error", inner)
        .required("error")
        .into()
}

/// The description of every route of `table`.
pub fn document(table: &[RouteSpec]) -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas = Vec::new();
    for spec in table {
        if let Some(m) = method(&spec.method) {
            paths.add_path_operation(spec.path, vec![m], operation(spec, &mut schemas));
        }
    }
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some(
            "a device's sc_…, a user's su_…, the admin token, or a playback token",
        ))
        .build();
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .schema("Error", error_schema())
        .security_scheme("bearer", SecurityScheme::Http(bearer))
        .security_scheme(
            "token_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("token"))),
        )
        .security_scheme(
            "sms_key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("key"))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Sharecast")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Every route of a Sharecast server (docs/http-api.md).",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: &str, path: &'static str, access: Access, page: bool) -> RouteSpec {
        RouteSpec {
            method: method.into(),
            path,
            access,
            asset: None,
            page,
        }
    }

    /// Every route of the real table (`crate::routes`, one route a line):
    /// method, path and whether it is a page, read from its source.
    fn declared_routes() -> Vec<RouteSpec> {
        let source = include_str!("routes.rs");
        let mut specs = Vec::new();
        for line in source.lines() {
            let quoted = || line.split('"').nth(1);
            let found = if line.contains("add_page(\"") {
                quoted().map(|p| ("GET".to_string(), p, true))
            } else if let Some((_, rest)) = line
                .split_once("add(Method::")
                .or_else(|| line.split_once("add_asset(Method::"))
            {
                let method = rest.split(',').next().unwrap_or_default().to_string();
                quoted().map(|p| (method, p, false))
            } else {
                None
            };
            if let Some((method, path, page)) = found {
                let path: &'static str = Box::leak(path.to_string().into_boxed_str());
                specs.push(spec(&method, path, Access::Public, page));
            }
        }
        specs
    }

    /// A JSON answer without a schema is a route added undescribed: every
    /// route of the table that answers `application/json` on success
    /// (but the description itself) has a schema for it.
    #[test]
    fn every_json_answer_has_a_schema() {
        let table = declared_routes();
        // The reading of the table found every route (one `.add` a route).
        let declared = include_str!("routes.rs").matches(".add").count();
        assert_eq!(table.len(), declared, "routes.rs lines not understood");
        assert!(table.len() > 60, "{} routes", table.len());
        let doc = serde_json::to_value(document(&table)).unwrap();
        let mut undescribed = Vec::new();
        for spec in &table {
            if spec.path == "/api/v1/openapi.json" {
                continue;
            }
            let op = &doc["paths"][spec.path][spec.method.to_lowercase()];
            assert!(op.is_object(), "{} {}", spec.method, spec.path);
            for (code, answer) in op["responses"].as_object().unwrap() {
                if !code.starts_with('2') {
                    continue;
                }
                let json = &answer["content"]["application/json"];
                if json.is_object() && json.get("schema").is_none() {
                    undescribed.push(format!("{} {}", spec.method, spec.path));
                }
            }
        }
        assert!(
            undescribed.is_empty(),
            "JSON answers without a schema (add them to ANSWERS):\n{}",
            undescribed.join("\n")
        );
    }

    #[test]
    fn every_route_is_an_operation_with_its_parameters_and_rule() {
        let table = [
            spec(
                "GET",
                "/api/v1/assets/{id}/frame",
                Access::AssetViewer,
                false,
            ),
            spec("POST", "/api/v1/shares", Access::Device, false),
            spec("GET", "/vod/{id}/{file}", Access::Capability, false),
            spec("HEAD", "/vod/{id}/{file}", Access::Capability, false),
            spec("GET", "/admin", Access::Admin, true),
        ];
        let doc = serde_json::to_value(document(&table)).unwrap();
        let paths = &doc["paths"];
        let frame = &paths["/api/v1/assets/{id}/frame"]["get"];
        let params: Vec<_> = frame["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap(),
                    p["in"].as_str().unwrap(),
                    p["required"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(params, [("id", "path", true), ("t_ms", "query", true)]);
        assert_eq!(frame["security"].as_array().unwrap().len(), 3, "{frame}");
        assert!(
            frame["responses"]["2XX"]["content"]["image/jpeg"].is_object(),
            "{frame}"
        );
        assert_eq!(
            frame["responses"]["404"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error"
        );
        let share = &paths["/api/v1/shares"]["post"];
        let body = &share["requestBody"];
        assert_eq!(body["required"], true, "{share}");
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/NewShare"
        );
        let new_share = &doc["components"]["schemas"]["NewShare"];
        assert!(
            new_share["properties"]["asset_id"].is_object(),
            "{new_share}"
        );
        assert_eq!(
            new_share["additionalProperties"], false,
            "deny_unknown_fields: {new_share}"
        );
        assert_eq!(share["security"][0]["bearer"], serde_json::json!([]));
        assert_eq!(share["operationId"], "postApiV1Shares");
        // Two methods on one path, the HEAD without a body.
        assert!(
            paths["/vod/{id}/{file}"]["get"]["responses"]["206"]["content"]["video/mp4"]
                .is_object()
        );
        assert!(paths["/vod/{id}/{file}"]["head"]["responses"]["206"]
            .get("content")
            .is_none());
        assert!(paths["/admin"]["get"]["responses"]["401"]["content"]["text/html"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
