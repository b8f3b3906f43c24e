//! `#[task]`: an `async fn` becomes a zero-sized durable task handle.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericArgument, ItemFn, Lit, LitStr, PathArguments, ReturnType, Type};

use crate::attr::{self, Arg, Errors, Value};
use crate::names::name_problem;

struct Options {
    name: Option<LitStr>,
    events: Option<Type>,
    max_attempts: Option<u32>,
    auto_recover: Option<bool>,
    recovery_max_age_ms: Option<u64>,
    at_most_once: Option<bool>,
    on_behalf_of: Option<bool>,
    /// `true` = suspend when the last SSE client leaves (the default), `false` = continue.
    suspend_on_disconnect: Option<bool>,
    krate: syn::Path,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                "#[task] goes on an `async fn NAME(ctx: TaskContext<Events>, input: Input) -> Result<Output, Error>`",
            )
            .to_compile_error();
            return quote! { #item #e };
        }
    };
    let mut errors = Errors::default();
    let options = parse_options(attr, &mut errors);
    let sig = check_signature(&func, &options, &mut errors);
    check_step_names(&func, &mut errors);
    if options.name.is_none()
        && let Some(p) = name_problem(&taskflow_rules::default_task_name(
            &func.sig.ident.to_string(),
        ))
    {
        errors.at(
            func.sig.ident.span(),
            format!(
                "the task name taken from the fn name is invalid: {p}; set one with #[task(name = \"...\")]"
            ),
        );
    }
    match (errors.finish(), sig) {
        (Ok(()), Some(sig)) => generate(&func, &options, &sig),
        (result, _) => {
            let e = result.err().map(|e| e.to_compile_error());
            if matches!(func.sig.inputs.first(), Some(FnArg::Receiver(_))) {
                // Inside an impl block a stub struct would be one more error.
                return quote! { #e };
            }
            // One stub handle in place of the fn, so later uses do not cascade into errors.
            let vis = &func.vis;
            let ident = &func.sig.ident;
            quote! {
                #[allow(non_camel_case_types)]
                #[derive(Clone, Copy, Debug)]
                #vis struct #ident;
                #e
            }
        }
    }
}

fn parse_options(attr: TokenStream, errors: &mut Errors) -> Options {
    let mut o = Options {
        name: None,
        events: None,
        max_attempts: None,
        auto_recover: None,
        recovery_max_age_ms: None,
        at_most_once: None,
        on_behalf_of: None,
        suspend_on_disconnect: None,
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

/// The types read off the signature.
struct Signature {
    events: Type,
    input: Type,
    output: Type,
    error: Type,
}

/// `TaskContext<E>` → `E`.
fn context_events(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "TaskContext" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(GenericArgument::Type(t)) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}

/// `Result<O, E>` → `(O, E)`.
fn result_types(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next(), types.next()) {
        (Some(o), Some(e), None) => Some((o, e)),
        _ => None,
    }
}

fn tokens_eq(a: &Type, b: &Type) -> bool {
    quote!(#a).to_string() == quote!(#b).to_string()
}

fn check_signature(func: &ItemFn, o: &Options, errors: &mut Errors) -> Option<Signature> {
    let sig = &func.sig;
    let mut ok = true;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token.span(),
            "a #[task] must be an `async fn`; write `async fn` (the handler awaits steps)",
        );
        ok = false;
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.at(
            sig.generics.span(),
            "a #[task] fn cannot be generic: a registered task has one input, output and events type; write a task per type",
        );
        ok = false;
    }
    let mut params = sig.inputs.iter();
    let first = params.next();
    let second = params.next();
    let extra = params.next();
    let mut events = None;
    match first {
        Some(FnArg::Receiver(r)) => {
            errors.at(
                r.span(),
                "a #[task] is a free `async fn`, not a method: remove `self` and pass what you need in the input",
            );
            ok = false;
        }
        Some(FnArg::Typed(pt)) => match context_events(&pt.ty) {
            Some(e) => events = Some(e.clone()),
            None => {
                errors.at(
                    pt.ty.span(),
                    "the first parameter of a #[task] must be the context: `ctx: TaskContext<Events>` (use `TaskContext<NoEvents>` when the task emits none)",
                );
                ok = false;
            }
        },
        None => {
            errors.at(
                sig.paren_token.span.join(),
                "a #[task] takes two parameters: `(ctx: TaskContext<Events>, input: Input)`",
            );
            ok = false;
        }
    }
    let input = match second {
        Some(FnArg::Typed(pt)) => Some((*pt.ty).clone()),
        Some(FnArg::Receiver(_)) => None,
        None if first.is_some() => {
            errors.at(
                sig.paren_token.span.join(),
                "a #[task] takes its input as the second parameter: `(ctx: TaskContext<Events>, input: Input)`; use `()` for no input",
            );
            ok = false;
            None
        }
        None => None,
    };
    if let Some(extra) = extra {
        errors.at(
            extra.span(),
            "a #[task] takes exactly two parameters; put further values in the input type",
        );
        ok = false;
    }
    if let (Some(given), Some(in_sig)) = (&o.events, &events)
        && !tokens_eq(given, in_sig)
    {
        errors.at(
            in_sig.span(),
            format!(
                "the context's events type `{}` differs from `events = {}`; make them the same type",
                quote!(#in_sig),
                quote!(#given)
            ),
        );
        ok = false;
    }
    let (output, error) = match &sig.output {
        ReturnType::Type(_, ty) => match result_types(ty) {
            Some((out, err)) => (Some(out.clone()), Some(err.clone())),
            None => {
                errors.at(
                    ty.span(),
                    "a #[task] returns `Result<Output, Error>` (Error: Into<TaskError>), written as `Result<..>`",
                );
                ok = false;
                (None, None)
            }
        },
        ReturnType::Default => {
            errors.at(
                sig.ident.span(),
                "a #[task] returns `Result<Output, Error>`; add `-> Result<Output, TaskError>`",
            );
            ok = false;
            (None, None)
        }
    };
    if !ok {
        return None;
    }
    Some(Signature {
        events: events?,
        input: input?,
        output: output?,
        error: error?,
    })
}

/// Finds `x.step("lit", ..)` / `x.step_with_origin("lit", ..)` calls in the body.
#[derive(Default)]
struct StepCalls {
    seen: HashMap<String, Span>,
    duplicates: Vec<(String, Span, Span)>,
}

impl<'ast> Visit<'ast> for StepCalls {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if (call.method == "step" || call.method == "step_with_origin")
            && let Some(syn::Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            })) = call.args.first()
        {
            let name = s.value();
            match self.seen.get(&name) {
                Some(first) => self.duplicates.push((name, *first, s.span())),
                None => {
                    self.seen.insert(name, s.span());
                }
            }
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    // A closure or nested item is another body; its steps are its own business.
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

fn check_step_names(func: &ItemFn, errors: &mut Errors) {
    let mut calls = StepCalls::default();
    calls.visit_block(&func.block);
    for (name, _first, second) in calls.duplicates {
        errors.at(
            second,
            format!(
                "step name \"{name}\" is already used at another call site in this task; give each call site its own name (calls from one site, e.g. in a loop, are keyed \"{name}#0\", \"{name}#1\", ...)"
            ),
        );
    }
    for name in calls.seen.keys() {
        if let Some(p) = name_problem(name) {
            errors.at(calls.seen[name], format!("invalid step name: {p}"));
        }
    }
}

fn generate(func: &ItemFn, o: &Options, sig: &Signature) -> TokenStream {
    let krate = &o.krate;
    let private = quote!(#krate::__private);
    let vis = &func.vis;
    let ident = &func.sig.ident;
    let docs = func.attrs.iter().filter(|a| a.path().is_ident("doc"));
    let other_attrs: Vec<_> = func
        .attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc"))
        .collect();
    let name = o.name.as_ref().map_or_else(
        || taskflow_rules::default_task_name(&ident.to_string()),
        LitStr::value,
    );
    let Signature {
        events,
        input,
        output,
        error,
    } = sig;
    // Only the keys the user wrote: every other setting is the runtime's default.
    let mut options = quote!(#private::TaskOptions::default());
    if let Some(n) = o.max_attempts {
        options = quote!(#options.max_attempts(const { #private::attempts(#n) }));
    }
    if let Some(on) = o.auto_recover {
        options = quote!(#options.auto_recover(#on));
    }
    if let Some(ms) = o.recovery_max_age_ms {
        options = quote!(#options.recovery_max_age(::core::time::Duration::from_millis(#ms)));
    }
    if let Some(at_most_once) = o.at_most_once {
        let mode = if at_most_once {
            quote!(AtMostOnce)
        } else {
            quote!(AtLeastOnce)
        };
        options = quote!(#options.execute_mode(#private::ExecuteMode::#mode));
    }
    if let Some(on) = o.on_behalf_of {
        options = quote!(#options.on_behalf_of(#on));
    }
    if let Some(suspend) = o.suspend_on_disconnect {
        let rule = if suspend {
            quote!(Suspend)
        } else {
            quote!(Continue)
        };
        options = quote!(#options.on_disconnect(#private::OnDisconnect::#rule));
    }
    let mut body_fn = func.clone();
    body_fn.sig.ident = syn::Ident::new("__taskflow_body", ident.span());
    body_fn.vis = syn::Visibility::Inherited;
    body_fn.attrs = other_attrs.into_iter().cloned().collect();
    // The error type's requirement is the bound of this conversion, spanned at the user's
    // error type so rustc's message lands there (input, output and events are checked by the
    // Task trait's own bounds).
    let convert = quote_spanned! {error.span()=>
        fn __taskflow_into_task_error<E: #private::IntoTaskError>(error: E) -> #private::TaskError {
            ::core::convert::Into::into(error)
        }
    };
    let convert_call = quote_spanned! {error.span()=>
        __taskflow_into_task_error::<#error>(__error)
    };
    let name_doc = format!("The durable task `{name}` (generated by `#[task]`).");
    quote! {
        #(#docs)*
        #[doc = ""]
        #[doc = #name_doc]
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default)]
        #vis struct #ident;

        #[automatically_derived]
        impl #private::Task for #ident {
            const NAME: &'static str = #name;
            type Input = #input;
            type Output = #output;
            type Events = #events;

            fn options(&self) -> #private::TaskOptions {
                #options
            }

            #[allow(clippy::manual_async_fn)]
            fn run(
                self,
                __ctx: #private::TaskContext<#events>,
                __input: #input,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<#output, #private::TaskError>,
            > + ::core::marker::Send {
                #[allow(clippy::unused_async)]
                #body_fn
                #convert
                async move {
                    match __taskflow_body(__ctx, __input).await {
                        ::core::result::Result::Ok(__output) => ::core::result::Result::Ok(__output),
                        ::core::result::Result::Err(__error) => {
                            ::core::result::Result::Err(#convert_call)
                        }
                    }
                }
            }
        }
    }
}
