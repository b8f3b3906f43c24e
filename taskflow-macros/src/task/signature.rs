//! The handler's signature: `async fn NAME(ctx: TaskContext<E>, input: I) -> Result<O, Err>`.

use quote::quote;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type};

use super::options::Options;
use crate::attr::Errors;

/// The types read off the signature.
pub(super) struct Signature {
    pub(super) events: Type,
    pub(super) input: Type,
    pub(super) output: Type,
    pub(super) error: Type,
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

pub(super) fn check_signature(
    func: &ItemFn,
    o: &Options,
    errors: &mut Errors,
) -> Option<Signature> {
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
