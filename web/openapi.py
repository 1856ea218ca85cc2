"""The OpenAPI 3.1 document of the gateway's HTTP API, served at ``/api/openapi.json`` (no login needed).

Every route the app serves is described here (tests/web/test_openapi.py checks it against the router), with
the login in front of it: a session cookie from ``POST /api/login``, and the ``X-CSRF-Token`` header on every
state-changing request.
"""

from __future__ import annotations

from aiohttp import web

from hems import __version__

JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict, required: tuple[str, ...] = (), **extra) -> dict:
    out = {"type": "object", "properties": props, **extra}
    if required:
        out["required"] = list(required)
    return out


def _num(desc: str = "", nullable: bool = False) -> dict:
    out: dict = {"type": ["number", "null"] if nullable else "number"}
    if desc:
        out["description"] = desc
    return out


def _str(desc: str = "", **extra) -> dict:
    out: dict = {"type": "string", **extra}
    if desc:
        out["description"] = desc
    return out


def _arr(items: dict, desc: str = "") -> dict:
    out: dict = {"type": "array", "items": items}
    if desc:
        out["description"] = desc
    return out


def _json_response(desc: str, schema: dict) -> dict:
    return {"description": desc, "content": {JSON: {"schema": schema}}}


def _error(desc: str) -> dict:
    return _json_response(desc, _ref("Error"))


UNAUTHORIZED = _error('No session: `{"error": "login required"}`. Log in with POST /api/login.')
FORBIDDEN = _error(
    'CSRF token missing or wrong (`{"error": "CSRF token missing or wrong"}`), or the role may not do this.'
)
ROLE_FORBIDDEN = _error("The session's role may not do this (owner only).")


def _op(
    summary: str,
    responses: dict,
    *,
    tag: str,
    public: bool = False,
    unsafe: bool = False,
    params: list | None = None,
    body: dict | None = None,
    description: str = "",
) -> dict:
    op: dict = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    if public:
        op["security"] = []
    else:
        op["responses"].setdefault("401", UNAUTHORIZED)
        if unsafe:
            op["security"] = [{"session": [], "csrf": []}]
            op["responses"].setdefault("403", FORBIDDEN)
    return op


def _body(schema: dict, desc: str = "", required: bool = True) -> dict:
    out = {"required": required, "content": {JSON: {"schema": schema}}}
    if desc:
        out["description"] = desc
    return out


def _path_param(name: str, desc: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": desc}


def _page(title: str) -> dict:
    return _op(
        title,
        {
            "200": {
                "description": "The page (HTML).",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "302": {"description": "No session: to /login (or /setup while no owner account exists)."},
        },
        tag="pages",
        public=True,
        description="Pages need a session too; without one the browser is sent to the login page.",
    )


RANGE_PARAMS = [
    {
        "name": "range",
        "in": "query",
        "schema": {"type": "string", "enum": ["day", "week", "month"], "default": "day"},
        "description": "A local calendar day, the 7 days ending with `date`, or `date`'s calendar month.",
    },
    {
        "name": "date",
        "in": "query",
        "schema": {"type": "string", "format": "date"},
        "description": "Local date YYYY-MM-DD in the home's time zone (default: today).",
    },
]


def _schemas() -> dict:
    energy = {
        "import_kwh": _num("bought from the grid"),
        "export_kwh": _num("sold to the grid"),
        "pv_kwh": _num("solar produced"),
        "home_kwh": _num("used by the home except the battery and the EV"),
        "ev_kwh": _num("charged into the EV"),
        "battery_charge_kwh": _num(),
        "battery_discharge_kwh": _num(),
        "cost": _num("import × import price − export × export price"),
        "cost_no_control": _num("the same home without the gateway's control (see savings_method)"),
        "savings": _num("cost_no_control − cost"),
    }
    nullable_list = _arr({"type": ["number", "null"]})
    tariff_period = _obj(
        {
            "name": _str(),
            "days": _str(enum=["weekdays", "weekends", "all"]),
            "start": _str("local HH:MM"),
            "end": _str("local HH:MM; 24:00 allowed; end < start wraps past midnight"),
            "import_price_per_kwh": _num(),
            "export_price_per_kwh": _num("optional; else the tariff's"),
            "months": _arr({"type": "integer", "minimum": 1, "maximum": 12}, "optional season"),
        },
        ("name", "start", "end", "import_price_per_kwh"),
    )
    dr_event = _obj(
        {
            "key": _str("source:event_id"),
            "source": _str(),
            "event_id": _str(),
            "modification_number": {"type": "integer"},
            "start_ts": _num(),
            "effective_start_ts": _num(),
            "duration_s": _num(),
            "end_ts": _num(nullable=True),
            "level": {"type": ["integer", "null"]},
            "shed_w": _num(nullable=True),
            "import_cap_w": _num(nullable=True),
            "export_cap_w": _num(nullable=True),
            "generation_cap_w": _num(nullable=True),
            "price_per_kwh": _num(nullable=True),
            "objective": _str("one-line summary"),
            "opt": _str(enum=["opt_in", "opt_out"]),
            "state": _str(enum=["pending", "active", "completed", "cancelled", "superseded", "opted_out"]),
            "reason": _str(),
            "test_event": {"type": "boolean"},
            "report": {"oneOf": [_ref("DRReport"), {"type": "null"}]},
        },
        ("key", "source", "event_id", "state", "opt"),
        additionalProperties=True,
    )
    return {
        "Error": _obj({"error": _str("what went wrong, in words a person can act on")}, ("error",)),
        "ValidationError": _obj(
            {
                "error": _str(),
                "errors": _obj({}, additionalProperties=_str(), description="message per field"),
            },
            ("error",),
        ),
        "Credentials": _obj({"username": _str(), "password": _str()}, ("username", "password")),
        "Setup": _obj(
            {
                "setup_code": _str("the one-time code from the console"),
                "username": _str(),
                "password": _str(),
            },
            ("setup_code", "username", "password"),
        ),
        "Me": _obj(
            {"username": _str(), "role": _str(enum=["owner", "installer"]), "csrf_token": _str()},
            ("username", "role", "csrf_token"),
        ),
        "LockedOut": _obj(
            {"error": _str(), "retry_after_s": {"type": "integer"}}, ("error", "retry_after_s")
        ),
        "User": _obj(
            {"username": _str(), "role": _str(enum=["owner", "installer"])}, additionalProperties=True
        ),
        "Tariff": _obj(
            {
                "name": _str(),
                "currency": _str("ISO 4217", pattern="^[A-Z]{3}$"),
                "timezone": _str(),
                "export_price_per_kwh": _num(),
                "demand_charge_per_kw": _num(),
                "periods": _arr(tariff_period),
            },
            ("export_price_per_kwh", "periods"),
            additionalProperties=True,
        ),
        "Settings": _obj(
            {
                "battery_reserve_pct": _num(),
                "ev_departure": _str("local HH:MM"),
                "ev_target_soc_pct": _num(),
                "comfort_min_c": _num(),
                "comfort_max_c": _num(),
                "export_limit_w": _num("null = no limit", nullable=True),
                "tariff": _ref("Tariff"),
                "cloud": _obj(
                    {
                        "mqtt_enabled": {"type": "boolean"},
                        "mqtt_host": _str(),
                        "mqtt_port": {"type": "integer"},
                        "mqtt_username": _str(),
                        "mqtt_password": _str("write-only"),
                        "mqtt_password_set": {"type": "boolean", "readOnly": True},
                        "mqtt_tls": {"type": "boolean"},
                    }
                ),
            }
        ),
        "Health": _obj(
            {
                "status": _str(enum=["ok", "starting"]),
                "version": _str(),
                "uptime_s": _num(),
                "devices": _obj({}, additionalProperties={"type": "integer"}),
            },
            ("status",),
        ),
        "Reading": _obj({"value": {}, "unit": _str(), "ts": _num()}),
        "Device": _obj(
            {
                "device_id": _str(),
                "name": _str(),
                "capabilities": _arr(_str()),
                "integration": _str(),
                "manufacturer": _str(),
                "model": _str(),
                "status": _str(enum=["ok", "offline", "faulty"]),
                "status_reason": _str(),
                "readings": _obj({}, additionalProperties=_ref("Reading")),
                "firmware": {
                    "oneOf": [
                        {"type": "null"},
                        _obj(
                            {
                                "version": _str(),
                                "update": _obj(
                                    {
                                        "state": _str(
                                            enum=["idle", "downloading", "installing", "installed", "failed"]
                                        ),
                                        "progress_pct": _num(nullable=True),
                                        "target_version": _str(),
                                        "message": _str(),
                                        "ts": _num(),
                                    }
                                ),
                            }
                        ),
                    ]
                },
                "last_seen_ts": _num("newest reading", nullable=True),
                "faults": _arr(_obj({"ts": _num()}, additionalProperties=True)),
            },
            ("device_id", "name", "status"),
            additionalProperties=True,
        ),
        "Status": _obj(
            {
                "gateway": _obj({"id": _str(), "time": _num(), "timezone": _str(), "clock_speed": _num()}),
                "tariff": _obj(
                    {
                        "period": _str(),
                        "import_price_per_kwh": _num(),
                        "export_price_per_kwh": _num(),
                        "currency": _str(),
                    }
                ),
                "controller": {"type": ["object", "null"]},
                "dr_events": _arr(_ref("DREvent")),
                "devices": _arr(_ref("Device")),
            },
            additionalProperties=True,
        ),
        "Plan": _obj(
            {
                "start_ts": _num(),
                "step_s": _num(),
                "reason": _str("what made the planner plan"),
                "status": _str(),
                "cost": _num("expected cost of the horizon"),
                "grid_w": _arr(_num()),
                "battery_w": _arr(_num(), "+ charging"),
                "battery_soc_pct": _arr(_num()),
                "ev_w": _arr(_num()),
                "hvac_w": _arr(_num()),
                "indoor_temp_c": _arr(_num()),
                "water_heater_w": _arr(_num()),
                "reasons": _arr(_arr(_str()), "the planner's reasons per step"),
                "forecast": {
                    "type": "object",
                    "description": "prices, PV, load, weather, EV, DR windows used",
                },
            },
            additionalProperties=True,
        ),
        "DREvent": dr_event,
        "DRReport": _obj(
            {
                "event": _str(),
                "method": {"type": ["string", "null"]},
                "error": _str("why there is no result"),
                "intervals": _arr(
                    _obj(
                        {
                            "ts": _num(),
                            "baseline_w": _num(),
                            "metered_w": _num(nullable=True),
                            "shed_w": _num(nullable=True),
                            "forecast_w": _num(nullable=True),
                        }
                    )
                ),
                "shed_wh": _num(),
                "mean_shed_w": _num(nullable=True),
                "requested_shed_w": _num(nullable=True),
                "complete": {"type": "boolean"},
            },
            additionalProperties=True,
        ),
        "DRDetail": _obj(
            {
                "event": _ref("DREvent"),
                "summary": _obj(
                    {
                        "key": _str(),
                        "state": _str(),
                        "active": {"type": "boolean"},
                        "can_opt_out": {"type": "boolean"},
                        "start_ts": _num(),
                        "end_ts": _num(nullable=True),
                    },
                    additionalProperties=True,
                ),
                "versions": _arr(_ref("DREvent"), "every version received, oldest first"),
                "report": {"oneOf": [_ref("DRReport"), {"type": "null"}]},
                "report_provisional": {"type": "boolean", "description": "true: the event is still running"},
                "now_ts": _num(),
            },
            ("event", "versions", "report"),
        ),
        "Totals": _obj({**energy, "self_sufficiency_pct": _num(nullable=True)}),
        "History": _obj(
            {
                "range": _str(enum=["day", "week", "month"]),
                "date": _str(format="date"),
                "first_day": _str(format="date"),
                "last_day": _str(format="date"),
                "label": _str(),
                "previous_date": _str(format="date"),
                "next_date": {"type": ["string", "null"], "format": "date"},
                "start_ts": _num(),
                "end_ts": _num(),
                "now_ts": _num(),
                "timezone": _str(),
                "currency": _str(),
                "resolution_s": _num("60 (day) or 900: the step energy and cost are computed at"),
                "coverage_pct": _num("share of the elapsed time with meter data", nullable=True),
                "power": _obj(
                    {
                        "step_s": _num(),
                        "ts": _arr(_num()),
                        "grid_w": nullable_list,
                        "pv_w": nullable_list,
                        "battery_w": nullable_list,
                        "home_w": nullable_list,
                        "ev_w": nullable_list,
                        "grid_no_control_w": nullable_list,
                        "soc_pct": nullable_list,
                    },
                    description="average power per chart step (5 min for a day, 1 h otherwise); null = no data",
                ),
                "periods": _obj(
                    {"ts": _arr(_num()), "label": _arr(_str()), **{k: nullable_list for k in energy}},
                    description="one bar per hour (day) or day (week, month); null = no data",
                ),
                "totals": _ref("Totals"),
                "savings_method": _str("how savings are worked out, in words"),
            }
        ),
        "Summary": _obj(
            {
                "date": _str(format="date"),
                "now_ts": _num(),
                "timezone": _str(),
                "currency": _str(),
                "today": _ref("Totals"),
                "coverage_pct": _num(nullable=True),
                "tariff": _obj(
                    {
                        "period": _str(),
                        "import_price_per_kwh": _num(),
                        "export_price_per_kwh": _num(),
                        "currency": _str(),
                        "until_ts": _num(nullable=True),
                        "next": {"type": ["object", "null"]},
                    }
                ),
                "dr_events": _arr(
                    _obj(
                        {
                            "key": _str(),
                            "state": _str(),
                            "objective": _str(),
                            "level": {"type": ["integer", "null"]},
                            "start_ts": _num(),
                            "end_ts": _num(nullable=True),
                            "active": {"type": "boolean"},
                            "can_opt_out": {"type": "boolean"},
                        },
                        additionalProperties=True,
                    )
                ),
                "controller": {"type": ["object", "null"]},
                "savings_method": _str(),
            }
        ),
        "CommissionAction": _obj(
            {
                "integration": _str(),
                "action": _str(),
                "title": _str(),
                "description": _str(),
                "params": _obj(
                    {},
                    additionalProperties=_obj(
                        {"type": _str(), "label": _str(), "default": {}}, additionalProperties=True
                    ),
                ),
                "state": {"type": "object", "description": "e.g. permit_join_remaining_s for a countdown"},
            },
            ("integration", "action", "title", "params"),
        ),
        "Devices": _obj(
            {"now_ts": _num(), "devices": _arr(_ref("Device")), "actions": _arr(_ref("CommissionAction"))}
        ),
    }


def document() -> dict:
    paths: dict = {
        "/healthz": {
            "get": _op(
                "Service health (never behind the login)",
                {
                    "200": _json_response("Running.", _ref("Health")),
                    "503": _json_response("Starting.", _ref("Health")),
                },
                tag="service",
                public=True,
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "This document",
                {"200": _json_response("OpenAPI 3.1", {"type": "object"})},
                tag="service",
                public=True,
            )
        },
        "/login": {"get": _page("Login page")},
        "/setup": {"get": _page("First-start setup page: setup code, owner username and password")},
        "/api/login": {
            "post": _op(
                "Log in; sets the hems_session (HttpOnly), hems_csrf and hems_device (HttpOnly, 180 days) cookies",
                {
                    "200": _json_response("Logged in.", _ref("Me")),
                    "400": _error("Missing field."),
                    "401": _error("Wrong username or password."),
                    "409": _error("Not set up yet: open /setup."),
                    "429": _json_response("Locked out after repeated failures.", _ref("LockedOut")),
                },
                tag="auth",
                public=True,
                body=_body(_ref("Credentials")),
            )
        },
        "/api/setup": {
            "post": _op(
                "Create the owner account with the one-time setup code (first start only); logs in",
                {
                    "201": _json_response("Owner created and logged in.", _ref("Me")),
                    "400": _json_response("A field is wrong.", _ref("ValidationError")),
                    "403": _json_response("Wrong setup code.", _ref("ValidationError")),
                    "409": _error("Already set up."),
                    "429": _json_response("Locked out after repeated failures.", _ref("LockedOut")),
                },
                tag="auth",
                public=True,
                body=_body(_ref("Setup")),
            )
        },
        "/api/logout": {
            "post": _op(
                "End the session",
                {"200": _json_response("Logged out.", {"type": "object"})},
                tag="auth",
                unsafe=True,
            )
        },
        "/api/me": {
            "get": _op(
                "Who is logged in, and the CSRF token", {"200": _json_response("", _ref("Me"))}, tag="auth"
            )
        },
        "/api/me/password": {
            "post": _op(
                "Change your own password (other sessions end; this one gets a new login)",
                {
                    "200": _json_response("Changed.", _ref("Me")),
                    "400": _json_response("Not changed.", _ref("ValidationError")),
                },
                tag="auth",
                unsafe=True,
                body=_body(_obj({"current_password": _str(), "new_password": _str()})),
            )
        },
        "/api/users": {
            "get": _op(
                "Accounts (owner only)",
                {"200": _json_response("", _obj({"users": _arr(_ref("User"))})), "403": ROLE_FORBIDDEN},
                tag="auth",
            ),
            "post": _op(
                "Add an account, e.g. an installer (owner only)",
                {
                    "201": _json_response("Created.", _ref("User")),
                    "400": _json_response("Not created.", _ref("ValidationError")),
                },
                tag="auth",
                unsafe=True,
                body=_body(
                    _obj(
                        {"username": _str(), "password": _str(), "role": _str(enum=["owner", "installer"])},
                        ("username", "password"),
                    )
                ),
            ),
        },
        "/api/users/{username}": {
            "delete": _op(
                "Remove an account (owner only)",
                {"200": _json_response("Removed.", {"type": "object"}), "400": _error("Not removed.")},
                tag="auth",
                unsafe=True,
                params=[_path_param("username", "the account")],
            )
        },
        "/api/status": {
            "get": _op(
                "Every device's latest readings, the tariff now, the controller's decision",
                {"200": _json_response("", _ref("Status"))},
                tag="live",
            )
        },
        "/api/live": {
            "get": _op(
                "WebSocket: a `snapshot` message (as /api/status), then `reading` messages, each (device, quantity) at most every 0.25 s with its latest value",
                {
                    "101": {"description": "Switching to WebSocket."},
                    "403": _error("Cross-site WebSocket refused."),
                },
                tag="live",
                description='Messages: `{"type": "snapshot", "status": Status}`, then '
                '`{"type": "reading", "device_id", "quantity", "value", "unit", "ts"}`.',
            )
        },
        "/api/plan": {
            "get": _op(
                "The current plan for the next 24 h with the planner's reasons per step",
                {"200": _json_response("", _ref("Plan")), "404": _error("No plan yet.")},
                tag="plan",
            )
        },
        "/api/settings": {
            "get": _op(
                "The homeowner's settings", {"200": _json_response("", _ref("Settings"))}, tag="settings"
            ),
            "patch": _op(
                "Change any subset of the settings (owner only); a re-plan starts at once",
                {
                    "200": _json_response("The new settings.", _ref("Settings")),
                    "400": _json_response(
                        "Nothing changed; a message per bad field.", _ref("ValidationError")
                    ),
                },
                tag="settings",
                unsafe=True,
                body=_body(_ref("Settings")),
            ),
            "put": _op(
                "Same as PATCH",
                {
                    "200": _json_response("The new settings.", _ref("Settings")),
                    "400": _json_response(
                        "Nothing changed; a message per bad field.", _ref("ValidationError")
                    ),
                },
                tag="settings",
                unsafe=True,
                body=_body(_ref("Settings")),
            ),
        },
        "/api/summary": {
            "get": _op(
                "Today so far (energy, cost, savings), the price now and next, DR events on or coming",
                {"200": _json_response("", _ref("Summary")), "503": _error("Still starting.")},
                tag="history",
            )
        },
        "/api/history": {
            "get": _op(
                "Power, energy, cost and savings against no control for a day, a week or a month",
                {
                    "200": _json_response("", _ref("History")),
                    "400": _error(
                        "Bad range or date, e.g. `range must be one of day, week, month, got 'year'`."
                    ),
                    "503": _error("Still starting."),
                },
                tag="history",
                params=RANGE_PARAMS,
            )
        },
        "/api/history.csv": {
            "get": _op(
                "The same range as CSV: one row per metered minute (day) or quarter hour (week, month)",
                {
                    "200": {
                        "description": "CSV with a header row: local_time, ts, grid_w, pv_w, battery_w, home_w, "
                        "ev_w, battery_soc_pct, import_price_per_kwh, export_price_per_kwh, import_kwh, "
                        "export_kwh, cost, grid_no_control_w, cost_no_control",
                        "content": {"text/csv": {"schema": {"type": "string"}}},
                    },
                    "400": _error("Bad range or date."),
                    "503": _error("Still starting."),
                },
                tag="history",
                params=RANGE_PARAMS,
            )
        },
        "/api/dr": {
            "get": _op(
                "Every DR event, with its verification report once made",
                {"200": _json_response("", _obj({"events": _arr(_ref("DREvent"))}))},
                tag="dr",
            )
        },
        "/api/dr/{key}": {
            "get": _op(
                "One DR event: versions and the verification report (provisional while it runs)",
                {"200": _json_response("", _ref("DRDetail")), "404": _error("No such event.")},
                tag="dr",
                params=[_path_param("key", "source:event_id")],
            )
        },
        "/api/dr/{key}/opt-out": {
            "post": _op(
                "Opt out of a pending or active event (owner only); the source is told",
                {
                    "200": _json_response("The event, opted out.", _ref("DREvent")),
                    "400": _error("Body is not JSON."),
                    "404": _error("No such event."),
                    "409": _error("The event is over."),
                },
                tag="dr",
                unsafe=True,
                params=[_path_param("key", "source:event_id")],
                body=_body(_obj({"reason": _str()}), required=False),
            )
        },
        "/api/devices": {
            "get": _op(
                "Every device (status, last seen, faults, firmware, readings) and the commissioning actions",
                {"200": _json_response("", _ref("Devices"))},
                tag="devices",
            )
        },
        "/api/devices/actions": {
            "get": _op(
                "The commissioning actions the integrations offer",
                {"200": _json_response("", _obj({"actions": _arr(_ref("CommissionAction"))}))},
                tag="devices",
            )
        },
        "/api/devices/actions/{integration}/{action}": {
            "post": _op(
                "Run a commissioning action (owner or installer), e.g. zigbee/permit_join",
                {
                    "200": _json_response(
                        "Done.",
                        _obj({"integration": _str(), "action": _str(), "result": {"type": "object"}}),
                    ),
                    "400": _error("Bad parameters; the message names the parameter."),
                    "404": _error("No such action; the message lists the offered ones."),
                    "502": _error("The device or its network failed."),
                },
                tag="devices",
                unsafe=True,
                params=[_path_param("integration", "e.g. zigbee"), _path_param("action", "e.g. permit_join")],
                body=_body(_obj({}, additionalProperties=True), "the action's parameters", required=False),
            )
        },
    }
    for path, title in (
        ("/", "Now: live power flow, today, price, DR banner"),
        ("/plan", "The plan for the next 24 h"),
        ("/history", "History: day, week, month; CSV"),
        ("/dr", "Utility (DR) events"),
        ("/devices", "Devices and commissioning"),
        ("/settings", "Settings"),
    ):
        paths[path] = {"get": _page(title)}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "HEMS gateway",
            "version": __version__,
            "description": "The home energy gateway's local API, used by its dashboard. Log in with "
            "POST /api/login; send the session cookie, and on POST/PUT/PATCH/DELETE the `X-CSRF-Token` header "
            "(the `csrf_token` from the login, also in the `hems_csrf` cookie). Times are POSIX seconds; "
            "quantities carry their unit in the name (`_w`, `_kwh`, `_pct`, `_c`).",
        },
        "servers": [{"url": "/"}],
        "security": [{"session": []}],
        "tags": [
            {"name": n}
            for n in ("service", "auth", "pages", "live", "plan", "history", "dr", "devices", "settings")
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "hems_session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
            "schemas": _schemas(),
        },
    }


_DOC: dict | None = None


async def api_openapi(request: web.Request) -> web.Response:
    global _DOC
    if _DOC is None:
        _DOC = document()
    return web.json_response(_DOC)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", api_openapi)
