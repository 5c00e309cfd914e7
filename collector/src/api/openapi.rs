//! The OpenAPI 3.0 description served at `/api/v1/openapi.json`. Its paths are the route
//! table's ([`super::routes::ROUTES`]): each route's summary and parameters from there, the
//! rest of its operation (description, responses) from the function here that the route
//! names. The components (parameters, schemas, error responses) are written here.

use serde_json::{Value, json};

use super::routes::{Access, ROUTES};

fn param_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

fn errors(codes: &[u16]) -> serde_json::Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            (
                c.to_string(),
                json!({"$ref": format!("#/components/responses/E{c}")}),
            )
        })
        .collect()
}

fn json_ok(schema: &str) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// A streaming endpoint's operation: the description, a 200 schema and the errors.
fn streaming_op(description: &str, ok_schema: &str) -> Value {
    let mut responses = errors(&[400, 401, 403, 404, 500]);
    responses.insert("200".into(), json_ok(ok_schema));
    json!({"description": description, "responses": responses})
}

pub(super) fn healthz() -> Value {
    json!({
        "description": "200 when the store answers a query, 503 otherwise. No authentication.",
        "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}},
            "503": error_response("The store does not answer.")
        }
    })
}

pub(super) fn openapi_json() -> Value {
    json!({
        "responses": {"200": {"description": "OpenAPI 3.0 document", "content": {"application/json": {"schema": {"type": "object"}}}}}
    })
}

pub(super) fn tenants() -> Value {
    json!({
        "description": "Tenants with data, tenants named in the configuration, and tenants named in the token's scope, restricted to the token's scope (all of them for an admin token).",
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Tenants"}}}},
            "400": {"$ref": "#/components/responses/E400"},
            "401": {"$ref": "#/components/responses/E401"},
            "500": {"$ref": "#/components/responses/E500"}
        }
    })
}

pub(super) fn summary() -> Value {
    streaming_op(
        "active_sessions adds the sessions still running at the first quarter-hour of the range. peak_concurrent is the highest per-minute sum over the selected streams.",
        "Summary",
    )
}

pub(super) fn timeseries() -> Value {
    streaming_op(
        "One row per bucket of `granularity`, each bucket clipped to the range, with the metrics of that bucket alone (active_sessions and aqh per bucket). Hour, day, week and month buckets follow the time zone (`tz`, else the tenant's configured zone, else UTC); weeks start on Monday; local days may be 23 or 25 hours long. At most 10080 rows (minute granularity over at most 7 days), else 400. Minute rows carry only peak_concurrent and peak_at (the listeners of that minute); the other metrics are kept per quarter-hour and are null there.",
        "Timeseries",
    )
}

pub(super) fn by_hour() -> Value {
    streaming_op(
        "24 rows, local hours 0-23 in the time zone (`tz`, else the tenant's, else UTC), over the days of the range. active_sessions sums, over the days, the sessions overlapping that hour; unique_listeners counts distinct listeners active in that hour on any day. Half-hour and 45-minute zones are exact: data is kept per quarter-hour.",
        "ByHour",
    )
}

pub(super) fn session_lengths() -> Value {
    streaming_op(
        "13 buckets with edges 1, 5, 10, 15, 30 minutes, 1, 2, 3, 4, 6, 8, 12, 18 hours; the last is open (max_seconds null). Sessions are counted in the range they started in. Short sessions are reported on their own.",
        "SessionLengths",
    )
}

pub(super) fn by_dimension() -> Value {
    streaming_op(
        "Rows sorted by sessions, highest first (ties by value). stream and protocol come from the rollup keys and carry the summary's metrics (peak_concurrent only for stream). client, device, os, country, referrer, source and rendition (the HLS rendition, `none` for progressive streams) come from per-quarter-hour counters; their unique_listeners come from per-hour sketches (whole UTC hours overlapping the range). Per tenant and UTC hour the store keeps at most [limits] max_streams streams and max_values values per dimension: names beyond are merged into the row `(other)`, so rows sum to the totals. An unknown dimension is a 404.",
        "Breakdown",
    )
}

fn num(description: &str) -> Value {
    json!({"type": "number", "format": "double", "description": description})
}

fn int(description: &str) -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 0, "description": description})
}

fn metric_properties() -> serde_json::Map<String, Value> {
    let mut p = serde_json::Map::new();
    p.insert(
        "sessions".into(),
        int("Qualifying sessions that started in the range."),
    );
    p.insert(
        "short_sessions".into(),
        int("Sessions shorter than min_session (not bots) that started in the range."),
    );
    p.insert(
        "bot_sessions".into(),
        int("Sessions from bot User-Agents that started in the range."),
    );
    p.insert(
        "active_sessions".into(),
        int("Qualifying sessions overlapping the range: starts in the range plus sessions running at its first instant."),
    );
    p.insert(
        "listening_seconds".into(),
        num("Qualifying session time clipped to the range."),
    );
    p.insert(
        "tlh".into(),
        num("Total listening hours: listening_seconds / 3600."),
    );
    p.insert(
        "unique_listeners".into(),
        int("Distinct listeners with a qualifying session overlapping the range (cume), from sketches."),
    );
    p.insert(
        "unique_listeners_exact_across_epochs".into(),
        json!({"type": "boolean", "description": "False when the range crosses a calendar-month boundary (UTC): listener identities change per month, so a listener of both months counts twice."}),
    );
    p.insert("peak_concurrent".into(), int("Highest number of concurrent listeners in any minute of the range (summed over the selected streams)."));
    p.insert(
        "peak_at".into(),
        json!({"type": "string", "format": "date-time", "nullable": true, "description": "The first minute of the peak (RFC 3339, UTC); null when nobody listened."}),
    );
    p.insert(
        "average_listeners".into(),
        num("Average active sessions (AAS): listening_seconds / seconds in the range."),
    );
    p.insert(
        "tsl_seconds".into(),
        num("Time spent listening: listening_seconds / unique_listeners (0 without listeners)."),
    );
    p.insert(
        "aqh".into(),
        num("Average quarter-hour audience: mean over the range's quarter-hours of the listeners who listened at least 5 minutes in it (quarters without anyone count as 0)."),
    );
    p
}

fn header_properties() -> serde_json::Map<String, Value> {
    let mut p = serde_json::Map::new();
    p.insert("tenant".into(), json!({"type": "string"}));
    p.insert("stream".into(), json!({"type": "string", "nullable": true, "description": "The stream filter; null for all streams."}));
    p.insert("from".into(), json!({"type": "string", "format": "date-time", "description": "Effective start: `from` aligned down to the quarter-hour, RFC 3339 UTC."}));
    p.insert("to".into(), json!({"type": "string", "format": "date-time", "description": "Effective end (exclusive): `to` aligned up to the quarter-hour, RFC 3339 UTC."}));
    p
}

fn object(props: serde_json::Map<String, Value>) -> Value {
    let required: Vec<&String> = props.keys().collect();
    json!({"type": "object", "required": required, "properties": props})
}

fn with(mut base: serde_json::Map<String, Value>, extra: Value) -> Value {
    if let Value::Object(e) = extra {
        base.extend(e);
    }
    object(base)
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

pub fn document() -> Value {
    let metrics = object(metric_properties());
    let mut summary = header_properties();
    summary.extend(metric_properties());
    let mut ts_row = metric_properties();
    ts_row.insert("from".into(), json!({"type": "string", "format": "date-time", "description": "Bucket start, clipped to the range."}));
    ts_row.insert("to".into(), json!({"type": "string", "format": "date-time", "description": "Bucket end (exclusive), clipped to the range."}));
    for (k, v) in ts_row.iter_mut() {
        if !["from", "to", "peak_concurrent", "peak_at"].contains(&k.as_str()) {
            v["nullable"] = json!(true);
        }
    }
    let breakdown_row = json!({
        "type": "object",
        "required": ["value", "sessions", "listening_seconds", "unique_listeners", "share"],
        "properties": {
            "value": {"type": "string"},
            "sessions": int("Qualifying sessions that started in the range with this value."),
            "listening_seconds": num("Listening time of those sessions, clipped to the range."),
            "unique_listeners": int("Distinct listeners with this value. For stream/protocol per quarter-hour; for the session attributes from per-hour sketches, i.e. over the whole UTC hours that overlap the range."),
            "share": num("sessions / sessions of all rows (0 to 1)."),
            "short_sessions": int("stream and protocol only."),
            "bot_sessions": int("stream and protocol only."),
            "active_sessions": int("stream and protocol only."),
            "tlh": num("stream and protocol only."),
            "average_listeners": num("stream and protocol only."),
            "tsl_seconds": num("stream and protocol only."),
            "aqh": num("stream and protocol only."),
            "peak_concurrent": int("stream only (concurrency is kept per stream)."),
            "peak_at": {"type": "string", "format": "date-time", "nullable": true, "description": "stream only."}
        }
    });

    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "earshot collector API",
            "version": "1",
            "description": "Audience metrics of audio streams (Icecast, HLS) per tenant, answered from pre-aggregated rollups: quarter-hours, minutes for concurrency, whole UTC days for long ranges. Times are RFC 3339 in (any offset) and RFC 3339 UTC out. Ranges are half-open [from, to), aligned outwards to the quarter-hour, and at most max_range_days long (400 unless configured). Every count is of qualifying sessions (at least min_session long, not a bot) unless named otherwise. Errors are JSON: {\"error\": {\"status\": 400, \"message\": \"...\"}}."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token; the collector keeps only its SHA-256. A token reads the tenants of its scope, or all with the admin scope."}},
            "parameters": {
                "Tenant": {"name": "tenant", "in": "path", "required": true, "description": earshot_common::tenant::TenantName::RULE, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"}},
                "Dimension": {"name": "dimension", "in": "path", "required": true, "schema": {"type": "string", "enum": crate::store::Breakdown::NAMES}},
                "From": {"name": "from", "in": "query", "required": true, "description": "Start, RFC 3339 with an offset (2026-11-28T00:00:00Z, 2026-11-28T05:30:00+05:30); aligned down to the quarter-hour.", "schema": {"type": "string", "format": "date-time"}},
                "To": {"name": "to", "in": "query", "required": true, "description": "End (exclusive), RFC 3339 with an offset; aligned up to the quarter-hour. Must be after `from`.", "schema": {"type": "string", "format": "date-time"}},
                "Stream": {"name": "stream", "in": "query", "required": false, "description": "Only this stream (mount path or HLS stream); all streams when absent.", "schema": {"type": "string"}},
                "Granularity": {"name": "granularity", "in": "query", "required": false, "schema": {"type": "string", "enum": ["minute", "hour", "day", "week", "month"], "default": "day"}},
                "Tz": {"name": "tz", "in": "query", "required": false, "description": "Time zone: an IANA name (Europe/Paris), UTC, Z, or a fixed offset (+05:30, -0300). Default: the tenant's configured zone, else UTC.", "schema": {"type": "string"}}
            },
            "responses": {
                "E400": error_response("Bad request: a missing or malformed time (the message names the parameter and the expected format), from not before to, a range over max_range_days, an unknown granularity or time zone, too many rows, or an unknown parameter."),
                "E401": {
                    "description": "No token, or an unknown one.",
                    "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
                },
                "E403": error_response("The token's scope does not hold the tenant."),
                "E404": error_response("Unknown route or unknown dimension, or a tenant that is no tenant name."),
                "E500": error_response("The store failed.")
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["status", "message"], "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}},
                "Tenants": {"type": "object", "required": ["tenants"], "properties": {"tenants": {"type": "array", "items": {"type": "string"}}}},
                "Metrics": metrics,
                "Summary": object(summary),
                "TimeseriesRow": object(ts_row),
                "Timeseries": with(header_properties(), json!({
                    "granularity": {"type": "string", "enum": ["minute", "hour", "day", "week", "month"]},
                    "tz": {"type": "string", "description": "The time zone of the buckets, as given or configured."},
                    "rows": {"type": "array", "items": {"$ref": "#/components/schemas/TimeseriesRow"}}
                })),
                "HourOfDay": {"type": "object", "required": ["hour", "listening_seconds", "active_sessions", "unique_listeners", "sessions_started", "sessions_completed"], "properties": {
                    "hour": {"type": "integer", "minimum": 0, "maximum": 23},
                    "listening_seconds": num("Summed over the days."),
                    "active_sessions": int("Sessions overlapping that hour, summed over the days."),
                    "unique_listeners": int("Distinct listeners active in that hour on any day of the range."),
                    "sessions_started": int("Qualifying sessions that started in that hour."),
                    "sessions_completed": int("Qualifying sessions that ended in that hour.")
                }},
                "ByHour": with(header_properties(), json!({
                    "tz": {"type": "string"},
                    "unique_listeners_exact_across_epochs": {"type": "boolean"},
                    "rows": {"type": "array", "minItems": 24, "maxItems": 24, "items": {"$ref": "#/components/schemas/HourOfDay"}}
                })),
                "LengthBucket": {"type": "object", "required": ["min_seconds", "max_seconds", "sessions"], "properties": {
                    "min_seconds": {"type": "integer"},
                    "max_seconds": {"type": "integer", "nullable": true, "description": "Exclusive; null for the last bucket."},
                    "sessions": {"type": "integer"}
                }},
                "SessionLengths": with(header_properties(), json!({
                    "sessions": int("Qualifying sessions started in the range (the sum of the rows)."),
                    "short_sessions": int("Sessions shorter than min_session, not in the rows."),
                    "rows": {"type": "array", "minItems": 13, "maxItems": 13, "items": {"$ref": "#/components/schemas/LengthBucket"}}
                })),
                "BreakdownRow": breakdown_row,
                "Breakdown": with(header_properties(), json!({
                    "dimension": {"type": "string"},
                    "unique_listeners_exact_across_epochs": {"type": "boolean"},
                    "unique_listeners_resolution": {"type": "string", "enum": ["quarter", "hour"], "description": "hour for the session attributes (client … rendition)."},
                    "rows": {"type": "array", "items": {"$ref": "#/components/schemas/BreakdownRow"}}
                }))
            }
        }
    });
    add_live_and_metrics(&mut doc);
    add_apps_and_events(&mut doc);
    for route in ROUTES {
        let mut op = (route.operation)();
        op["summary"] = json!(route.summary);
        let params: Vec<Value> = route
            .params
            .iter()
            .chain(route.query)
            .map(|p| param_ref(p.component))
            .collect();
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        if route.access == Access::Public {
            op["security"] = json!([]);
        }
        doc["paths"][route.path][route.method.as_str()] = op;
    }
    doc
}

fn day_responses(ok: Value, extra: &[(u16, &str)]) -> Value {
    let mut r = errors(&[400, 401, 403, 500]);
    r.insert("200".into(), ok);
    for (code, text) in extra {
        r.insert(code.to_string(), error_response(text));
    }
    Value::Object(r)
}

pub(super) fn downloads() -> Value {
    json!({
        "description": "Downloads per store and app over the range, from App Store Connect Summary Sales reports (downloads = first-time downloads 1/1F/1T/F1 net of refunds, redownloads = 3/3F, updates = 7/7F/7T/F7; no uninstalls) and Google Play installs reports (downloads = Daily User Installs, updates = Daily Device Upgrades, uninstalls = Daily Device Uninstalls; no redownloads). A count is null where the store does not report it. Per app and day, Google's overview row is used when imported, else the sum of its country rows. Counts may be decimals (Apple's Units are DECIMAL(18,2)).",
        "responses": day_responses(json_ok("AppDownloads"), &[(404, "No apps database on this collector.")])
    })
}

pub(super) fn downloads_by() -> Value {
    json!({
        "description": "dimension must be `country`. Country rows only (Apple's Country Code, Google's country file), highest downloads first; apps whose reports have no country breakdown in the range are listed in apps_without_country.",
        "responses": day_responses(json_ok("AppDownloadsByCountry"), &[(404, "Unknown dimension, or no apps database.")])
    })
}

pub(super) fn engagement() -> Value {
    json!({
        "description": "Matomo's VisitsSummary.get, DevicesDetection.getType and DevicesDetection.getOsFamilies for the tenant's site, per day in the tenant's time zone, summed over the range: summary, timeseries and breakdowns by device type and OS family. Days are cached in the collector: a day fetched 2 hours after it ended is never fetched again; today is re-fetched at most every 5 minutes. nb_uniq_visitors and nb_users are given for one-day ranges and buckets only (Matomo's unique counts cannot be summed). The live counters (Live.getCounters, polled every minute) are under /live as `apps`.",
        "responses": day_responses(json_ok("AppEngagement"), &[(404, "Matomo not configured, or no site for the tenant."), (502, "Matomo failed or refused the token (the message says which).")])
    })
}

pub(super) fn get_events() -> Value {
    json!({
        "description": "The tenant's posted events kept in memory ([events] retention_secs, default 2 h; at most max_events of all tenants, the oldest dropped first and counted in `dropped`), oldest first. Poll with since=<last id seen>. A read token for the tenant.",
        "responses": day_responses(json_ok("Events"), &[])
    })
}

pub(super) fn post_events() -> Value {
    let mut responses = errors(&[400, 401, 403, 404]);
    responses.insert("202".into(), json!({"description": "Accepted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventsAccepted"}}}}));
    responses.insert("413".into(), error_response("The body is over 2 MB."));
    json!({
        "description": "One JSON object per line (application/x-ndjson), each with a string `type` (1-100 characters), optionally `at` (RFC 3339; default: when received) and `stream` (a string); other fields are kept as sent. At most 4096 bytes per line and 10000 lines per request. A bad line refuses the whole body (400, naming the line). Needs a token with scope = \"ingest\" for the tenant; a read token gets 403. Each event gets an id from the same sequence as live/stream and is pushed there as an `events` event.",
        "requestBody": {"required": true, "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
        "responses": responses
    })
}

/// The components of app downloads, Matomo engagement and the platform's events (see
/// `apps.rs`, `events.rs`).
fn add_apps_and_events(doc: &mut Value) {
    let day = |name: &str, what: &str| json!({"name": name, "in": "query", "required": true, "description": what, "schema": {"type": "string"}});
    let parameters = &mut doc["components"]["parameters"];
    parameters["DayFrom"] = day(
        "from",
        "First day, YYYY-MM-DD (or an RFC 3339 time: its date in the tenant's time zone).",
    );
    parameters["DayTo"] = day(
        "to",
        "Day after the last, YYYY-MM-DD: the range is [from, to). An RFC 3339 time after midnight counts its day in.",
    );
    parameters["DayGranularity"] = json!({"name": "granularity", "in": "query", "required": false, "schema": {"type": "string", "enum": ["day", "week", "month"], "default": "day"}, "description": "Bucket size of the rows (weeks start on Monday); buckets are clipped to the range."});
    parameters["AppStore"] = json!({"name": "store", "in": "query", "required": false, "schema": {"type": "string", "enum": ["app_store", "google_play"]}});
    parameters["App"] = json!({"name": "app", "in": "query", "required": false, "description": "One app: Apple SKU or Google package name.", "schema": {"type": "string"}});
    parameters["AppDimension"] = json!({"name": "dimension", "in": "path", "required": true, "schema": {"type": "string", "enum": ["country"]}});
    parameters["EventsSince"] = json!({"name": "since", "in": "query", "required": false, "schema": {"type": "string"}, "description": "An event id (events after it) or an RFC 3339 time (events whose `at` is not before it)."});
    parameters["EventType"] = json!({"name": "type", "in": "query", "required": false, "schema": {"type": "string"}, "description": "Only events of this type."});
    parameters["EventStream"] = json!({"name": "stream", "in": "query", "required": false, "schema": {"type": "string"}, "description": "Only events with this stream."});
    parameters["EventLimit"] = json!({"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}});
    let counts = |extra: Value| {
        let mut p = json!({
            "downloads": {"type": "number", "nullable": true, "description": "First-time downloads/installs; null if not reported."},
            "redownloads": {"type": "number", "nullable": true, "description": "Apple only."},
            "updates": {"type": "number", "nullable": true},
            "uninstalls": {"type": "number", "nullable": true, "description": "Google only."}
        });
        if let (Some(p), Value::Object(e)) = (p.as_object_mut(), extra) {
            p.extend(e);
        }
        json!({"type": "object", "properties": p})
    };
    let bucket = counts(
        json!({"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date", "description": "Exclusive."}}),
    );
    let visit = json!({
        "nb_visits": {"type": "integer"}, "nb_actions": {"type": "integer"},
        "nb_uniq_visitors": {"type": "integer", "nullable": true}, "nb_users": {"type": "integer", "nullable": true},
        "sum_visit_length": {"type": "integer", "description": "Seconds."}, "bounce_count": {"type": "integer"},
        "max_actions": {"type": "integer"}, "nb_visits_converted": {"type": "integer"},
        "bounce_rate": {"type": "number", "nullable": true, "description": "0..1"},
        "avg_time_on_site": {"type": "number", "nullable": true, "description": "Seconds."},
        "nb_actions_per_visit": {"type": "number", "nullable": true}
    });
    let with_visit = |extra: Value| {
        let mut p = visit.clone();
        if let (Some(p), Value::Object(e)) = (p.as_object_mut(), extra) {
            p.extend(e);
        }
        json!({"type": "object", "properties": p})
    };
    let schemas = &mut doc["components"]["schemas"];
    schemas["DownloadCounts"] = counts(json!({}));
    schemas["DownloadBucket"] = bucket;
    schemas["AppDownloads"] = json!({"type": "object", "properties": {
        "tenant": {"type": "string"}, "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "tz": {"type": "string"}, "granularity": {"type": "string"},
        "store": {"type": "string", "nullable": true}, "app": {"type": "string", "nullable": true},
        "totals": {"$ref": "#/components/schemas/DownloadCounts"},
        "by_store": {"type": "array", "items": counts(json!({"store": {"type": "string"}}))},
        "rows": {"type": "array", "description": "All apps, per bucket.", "items": {"$ref": "#/components/schemas/DownloadBucket"}},
        "apps": {"type": "array", "items": {"type": "object", "properties": {
            "store": {"type": "string"}, "app": {"type": "string"}, "apple_id": {"type": "string", "nullable": true},
            "totals": {"$ref": "#/components/schemas/DownloadCounts"},
            "rows": {"type": "array", "items": {"$ref": "#/components/schemas/DownloadBucket"}}
        }}}
    }});
    schemas["AppDownloadsByCountry"] = json!({"type": "object", "properties": {
        "tenant": {"type": "string"}, "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "dimension": {"type": "string"},
        "rows": {"type": "array", "items": counts(json!({"country": {"type": "string"}}))},
        "apps_without_country": {"type": "array", "items": {"type": "object", "properties": {"store": {"type": "string"}, "app": {"type": "string"}}}}
    }});
    schemas["AppEngagement"] = json!({"type": "object", "properties": {
        "tenant": {"type": "string"}, "site_id": {"type": "integer"},
        "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
        "tz": {"type": "string"}, "granularity": {"type": "string"},
        "fetched_days": {"type": "integer", "description": "Report-days fetched from Matomo for this answer (0: all from the cache)."},
        "summary": with_visit(json!({})),
        "timeseries": {"type": "array", "items": with_visit(json!({"from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"}}))},
        "by_device": {"type": "array", "items": with_visit(json!({"label": {"type": "string"}}))},
        "by_os": {"type": "array", "items": with_visit(json!({"label": {"type": "string"}}))}
    }});
    schemas["Event"] = json!({"type": "object", "required": ["id", "type", "at", "received_at"], "additionalProperties": true, "properties": {
        "id": {"type": "string"}, "type": {"type": "string"}, "stream": {"type": "string"},
        "at": {"type": "string", "format": "date-time"}, "received_at": {"type": "string", "format": "date-time"}
    }});
    schemas["Events"] = json!({"type": "object", "properties": {
        "tenant": {"type": "string"},
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        "more": {"type": "boolean", "description": "More events matched than `limit`: ask again with since=<last id>."},
        "last_id": {"type": "string"}, "retained": {"type": "integer"},
        "dropped": {"type": "integer", "description": "The tenant's events dropped to stay under max_events since the collector started."},
        "retention_seconds": {"type": "integer"}, "max_events": {"type": "integer"}
    }});
    schemas["EventsAccepted"] = json!({"type": "object", "properties": {
        "tenant": {"type": "string"}, "accepted": {"type": "integer"},
        "first_id": {"type": "string"}, "last_id": {"type": "string"},
        "dropped": {"type": "integer", "description": "Older events dropped to make room."}
    }});
    let live = &mut schemas["LiveNow"]["properties"];
    live["apps"] = json!({"type": "object", "nullable": true, "description": "Matomo Live.getCounters for the tenant's site over the last `last_minutes`, polled every minute; null without Matomo.", "properties": {
        "visits": {"type": "integer"}, "actions": {"type": "integer"}, "visitors": {"type": "integer"},
        "visits_converted": {"type": "integer"}, "last_minutes": {"type": "integer"},
        "updated_at": {"type": "string", "format": "date-time"}
    }});
    live["events"] = json!({"type": "object", "properties": {
        "last_id": {"type": "string", "description": "The tenant's last event id (\"0\": none)."},
        "dropped": {"type": "integer"}
    }});
}

fn live_responses(ok: Value) -> Value {
    let mut r = errors(&[400, 401, 403]);
    r.insert("200".into(), ok);
    Value::Object(r)
}

pub(super) fn metrics() -> Value {
    json!({
        "description": "Prometheus text format 0.0.4. Live listeners (earshot_live_listeners{tenant,stream,protocol}); the collector's health: earshot_agents_connected, earshot_batches_merged_total, earshot_live_datagrams_total, earshot_api_requests_total{status}, earshot_collector_folded_total{tenant,what} (distinct names the collector's [limits] folded into (other) on merge, per UTC hour, what = stream or a dimension; kept in the store across restarts) and more; per agent (label agent): earshot_agent_up, earshot_agent_lines_total, earshot_agent_malformed_lines_total{reason}, earshot_agent_not_sessions_total{tenant,kind} (2xx requests that were not audio: document, image, script, player_file, status_page, method, other, ignored) and earshot_agent_folded_total{tenant,what} (names the agent folded into (other)) (from merged batches), earshot_agent_sessions_open, earshot_agent_spool_batches, earshot_agent_spool_bytes, earshot_agent_send_failures_total, earshot_agent_live_sent_total, earshot_agent_live_dropped_total, earshot_agent_live_polls_failed_total (from the agent's last health report). Needs a token with the admin scope: every tenant's audience is on this page.",
        "responses": {
            "200": {"description": "OK", "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}},
            "400": {"$ref": "#/components/responses/E400"},
            "401": {"$ref": "#/components/responses/E401"},
            "403": error_response("The token is not an admin token."),
            "500": {"$ref": "#/components/responses/E500"}
        }
    })
}

pub(super) fn live_now() -> Value {
    json!({
        "description": "The live listener count of the tenant: the sum over hosts (agents) of their latest sample per stream, by stream, by protocol and per host. A host whose samples stop counts for nothing after stale_after_seconds. Samples arrive every agent poll interval ([live] interval_secs); the count follows within about one interval.",
        "responses": live_responses(json_ok("LiveNow"))
    })
}

pub(super) fn live_history() -> Value {
    json!({
        "description": "The sums of the recent past (kept for live_retention_secs, default 2 hours, across restarts), in buckets of `step` seconds aligned to the clock; the last bucket holds now. Each point gives the count at its time (`listeners`) and the highest count within its bucket (`peak`); both null before anything was known. At most 7200 points per series.",
        "responses": live_responses(json_ok("LiveHistory"))
    })
}

pub(super) fn live_stream() -> Value {
    json!({
        "description": "text/event-stream. One event `live` per change of what /live reports, its data the same JSON as /live, its id the change's event_id (ids only grow, across collector restarts too). The first event comes at once, with `retry: 1000`. A client reconnecting with the header Last-Event-ID gets the current state at once if it changed since that id, else nothing until the next change (a live count is latest-wins: missed intermediate values are in live/history). Idle streams carry a `: heartbeat` comment every heartbeat_secs (default 15). Posted events come as `events` events (data {\"tenant\", \"events\": [...]}, id the last event's id), always before the `live` event of the same change; reconnecting with Last-Event-ID resumes after the last event seen.",
        "responses": live_responses(json!({"description": "An endless event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}))
    })
}

/// The components of the live endpoints and `/metrics` (see `live.rs` and `metrics.rs`).
fn add_live_and_metrics(doc: &mut Value) {
    let components = &mut doc["components"];
    components["parameters"]["Minutes"] = json!({"name": "minutes", "in": "query", "required": false, "description": "How far back, in minutes; default and maximum: live_retention_secs / 60 (120).", "schema": {"type": "integer", "minimum": 1}});
    components["parameters"]["Step"] = json!({"name": "step", "in": "query", "required": false, "description": "Bucket length in seconds (1 to 3600).", "schema": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 60}});
    components["parameters"]["LastEventId"] = json!({"name": "Last-Event-ID", "in": "header", "required": false, "description": "The id of the last event the client saw (EventSource sends it on reconnect).", "schema": {"type": "string"}});
    let stream_now = json!({"type": "object", "required": ["stream", "protocol", "listeners", "updated_at"], "properties": {
        "stream": {"type": "string"},
        "protocol": {"type": "string", "enum": ["icecast", "hls"]},
        "listeners": int("Listeners now (summed over hosts in by_stream; this host's in hosts[].streams)."),
        "updated_at": {"type": "string", "format": "date-time", "description": "When the newest sample behind this number was received."}
    }});
    let point = json!({"type": "object", "required": ["at", "listeners", "peak"], "properties": {
        "at": {"type": "string", "format": "date-time", "description": "The bucket's end (for the last bucket: now)."},
        "listeners": {"type": "integer", "nullable": true, "description": "The count at `at`."},
        "peak": {"type": "integer", "nullable": true, "description": "The highest count within the bucket."}
    }});
    let schemas = &mut components["schemas"];
    schemas["LiveStream"] = stream_now;
    schemas["LivePoint"] = point;
    schemas["LiveNow"] = json!({"type": "object", "required": ["tenant", "listeners", "updated_at", "event_id", "stale_after_seconds", "by_stream", "by_protocol", "hosts"], "properties": {
        "tenant": {"type": "string"},
        "listeners": int("Listeners now, all streams."),
        "updated_at": {"type": "string", "format": "date-time", "nullable": true, "description": "When the last sample for the tenant was received (also one that changed nothing); null if none ever was."},
        "event_id": {"type": "string", "description": "The id of the last change (as in live/stream); \"0\" if nothing was ever seen."},
        "stale_after_seconds": int("A host counts for nothing this long after its last sample."),
        "by_stream": {"type": "array", "description": "Highest first.", "items": {"$ref": "#/components/schemas/LiveStream"}},
        "by_protocol": {"type": "array", "items": {"type": "object", "required": ["protocol", "listeners"], "properties": {"protocol": {"type": "string", "enum": ["icecast", "hls"]}, "listeners": {"type": "integer"}}}},
        "hosts": {"type": "array", "description": "Per agent, highest first.", "items": {"type": "object", "required": ["host", "listeners", "updated_at", "streams"], "properties": {
            "host": {"type": "string", "description": "The agent id."},
            "listeners": {"type": "integer"},
            "updated_at": {"type": "string", "format": "date-time"},
            "streams": {"type": "array", "items": {"$ref": "#/components/schemas/LiveStream"}}
        }}}
    }});
    schemas["LiveHistory"] = json!({"type": "object", "required": ["tenant", "stream", "from", "to", "minutes", "step_seconds", "total", "streams"], "properties": {
        "tenant": {"type": "string"},
        "stream": {"type": "string", "nullable": true},
        "from": {"type": "string", "format": "date-time", "description": "The first bucket's start."},
        "to": {"type": "string", "format": "date-time", "description": "Now."},
        "minutes": {"type": "integer"},
        "step_seconds": {"type": "integer"},
        "total": {"type": "array", "description": "The sum over the streams.", "items": {"$ref": "#/components/schemas/LivePoint"}},
        "streams": {"type": "array", "items": {"type": "object", "required": ["stream", "protocol", "points"], "properties": {
            "stream": {"type": "string"},
            "protocol": {"type": "string", "enum": ["icecast", "hls"]},
            "points": {"type": "array", "items": {"$ref": "#/components/schemas/LivePoint"}}
        }}}
    }});
}
