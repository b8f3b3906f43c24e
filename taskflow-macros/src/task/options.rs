//! The keys of `#[task(...)]`, each checked and kept for generation.

use proc_macro2::{Span, TokenStream};
use syn::{Lit, LitStr, Type};

use crate::attr::{self, Arg, Errors, Value};
use crate::names::name_problem;

/// What the user wrote; `None` for a key not given (the runtime's default applies).
pub(super) struct Options {
    pub(super) name: Option<LitStr>,
    pub(super) events: Option<Type>,
    /// The `#[signals]` enum the task accepts.
    pub(super) signals: Option<Type>,
    pub(super) max_attempts: Option<u32>,
    pub(super) auto_recover: Option<bool>,
    pub(super) recovery_max_age_ms: Option<u64>,
    pub(super) at_most_once: Option<bool>,
    pub(super) on_behalf_of: Option<bool>,
    /// `true` = suspend when the last SSE client leaves (the default), `false` = continue.
    pub(super) suspend_on_disconnect: Option<bool>,
    /// The code version recorded with each run (default 1).
    pub(super) version: Option<u32>,
    pub(super) krate: syn::Path,
}

pub(super) fn parse_options(attr: TokenStream, errors: &mut Errors) -> Options {
    let mut o = Options {
        name: None,
        events: None,
        signals: None,
        max_attempts: None,
        auto_recover: None,
        recovery_max_age_ms: None,
        at_most_once: None,
        on_behalf_of: None,
        suspend_on_disconnect: None,
        version: None,
        krate: syn::parse_quote!(::taskflow),
    };
    let args = match attr::parse_args(attr) {
        Ok(a) => a,
        Err(e) => {
            errors.push(e);
            return o;
        }
    };
    attr::check_duplicates(&args, errors);
    for arg in &args {
        let key = arg.key.to_string();
        let key = key.trim_start_matches("r#");
        if let Some(fix) = taskflow_rules::forbidden_task_key(key) {
            errors.at(
                arg.key.span(),
                format!("`{key}` is not a task setting; {fix}"),
            );
            continue;
        }
        match key {
            "name" => {
                if let Some(s) = attr::lit_str(
                    arg,
                    "the task's registered name, like \"count-to-n\"",
                    errors,
                ) {
                    match name_problem(&s.value()) {
                        Some(p) => errors.at(s.span(), format!("invalid task name: {p}")),
                        None => o.name = Some(s.clone()),
                    }
                }
            }
            "events" => match &arg.value {
                Some(Value::Type(t)) => o.events = Some((**t).clone()),
                _ => errors.at(
                    arg.key.span(),
                    "`events` takes the #[events] enum: `events = Progress`",
                ),
            },
            "signals" => match &arg.value {
                Some(Value::Type(t)) => o.signals = Some((**t).clone()),
                _ => errors.at(
                    arg.key.span(),
                    "`signals` takes the #[signals] enum: `signals = Approval`",
                ),
            },
            "max_attempts" => match &arg.value {
                Some(Value::Lit(Lit::Int(i))) => match i.base10_parse::<u32>() {
                    Ok(0) => {
                        errors.at(i.span(), "`max_attempts` must be at least 1 (1 = no retry)")
                    }
                    Ok(n) => o.max_attempts = Some(n),
                    Err(_) => errors.at(
                        i.span(),
                        "`max_attempts` must be a whole number from 1 to 4294967295",
                    ),
                },
                _ => errors.at(
                    value_span(arg),
                    "`max_attempts` takes a whole number ≥ 1: `max_attempts = 3`",
                ),
            },
            "version" => match &arg.value {
                Some(Value::Lit(Lit::Int(i))) => match i.base10_parse::<u32>() {
                    Ok(0) | Err(_) => errors.at(
                        i.span(),
                        "`version` is a whole number from 1 (the default) to 4294967295; raise it when a change of the handler must not resume runs the old code started",
                    ),
                    Ok(n) => o.version = Some(n),
                },
                _ => errors.at(
                    value_span(arg),
                    "`version` takes a whole number ≥ 1: `version = 2`",
                ),
            },
            "auto_recover" => o.auto_recover = flag(arg, errors),
            "on_behalf_of" => o.on_behalf_of = flag(arg, errors),
            "recovery_max_age" => {
                if let Some(s) = attr::lit_str(
                    arg,
                    "a duration like \"5m\", \"30s\", \"500ms\" or \"2h\"",
                    errors,
                ) {
                    match taskflow_rules::parse_duration_ms(&s.value()) {
                        Some(ms) => o.recovery_max_age_ms = Some(ms),
                        None => errors.at(
                            s.span(),
                            format!(
                                "`{}` is not a duration; write digits then one unit of ms, s, m or h, like \"5m\" (\"0s\" = never recover)",
                                s.value()
                            ),
                        ),
                    }
                }
            }
            "execute_mode" => {
                let mode = match &arg.value {
                    Some(Value::Path(p)) if p.is_ident("at_least_once") => Some(false),
                    Some(Value::Path(p)) if p.is_ident("at_most_once") => Some(true),
                    Some(Value::Lit(Lit::Str(s))) if s.value() == "at_least_once" => Some(false),
                    Some(Value::Lit(Lit::Str(s))) if s.value() == "at_most_once" => Some(true),
                    _ => None,
                };
                match mode {
                    Some(m) => o.at_most_once = Some(m),
                    None => errors.at(
                        value_span(arg),
                        "`execute_mode` is `at_least_once` (the default) or `at_most_once`",
                    ),
                }
            }
            "on_disconnect" => {
                let rule = match &arg.value {
                    Some(Value::Lit(Lit::Str(s))) if s.value() == "suspend" => Some(true),
                    Some(Value::Lit(Lit::Str(s))) if s.value() == "continue" => Some(false),
                    _ => None,
                };
                match rule {
                    Some(r) => o.suspend_on_disconnect = Some(r),
                    None => errors.at(
                        value_span(arg),
                        "`on_disconnect` is \"suspend\" (the default: a run the bridge started is suspended when its last SSE client has been gone for the grace period) or \"continue\"",
                    ),
                }
            }
            "crate" => {
                if let Some(s) =
                    attr::lit_str(arg, "the path of a renamed `taskflow` dependency", errors)
                {
                    match s.parse::<syn::Path>() {
                        Ok(p) => o.krate = p,
                        Err(_) => {
                            errors.at(s.span(), "`crate` must be a path, like \"my_taskflow\"")
                        }
                    }
                }
            }
            other => errors.at(
                arg.key.span(),
                format!(
                    "unknown #[task] key `{other}`; accepted keys: {}",
                    taskflow_rules::TASK_KEYS.join(", ")
                ),
            ),
        }
    }
    o
}

fn value_span(arg: &Arg) -> Span {
    arg.value.as_ref().map_or(arg.key.span(), Value::span)
}

fn flag(arg: &Arg, errors: &mut Errors) -> Option<bool> {
    match &arg.value {
        None => Some(true),
        Some(Value::Lit(Lit::Bool(b))) => Some(b.value),
        Some(v) => {
            errors.at(v.span(), format!("`{}` takes `true` or `false`", arg.key));
            None
        }
    }
}
