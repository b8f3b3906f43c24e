//! Literal step names in the body: each call site its own name, each name valid, and the
//! whole list recorded on the task when the macro can see every step call.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::{Expr, FnArg, Ident, ItemFn, Lit, Pat, Token};

use crate::attr::Errors;
use crate::names::name_problem;

/// What the body's step calls say.
pub(super) struct StepNames {
    /// Every literal step name, in order of first appearance.
    pub(super) names: Vec<String>,
    /// `false` when some step may escape the macro's sight: a step name that is not a string
    /// literal, the context passed somewhere (a helper may call steps), or the context used
    /// inside a macro whose arguments are not expressions.
    pub(super) complete: bool,
}

/// Finds `x.step("lit", ..)` / `x.step_with_origin("lit", ..)` calls in the body, and any
/// use of the context that could hide one.
struct StepCalls {
    ctx: Option<Ident>,
    seen: HashMap<String, Span>,
    order: Vec<String>,
    duplicates: Vec<(String, Span)>,
    complete: bool,
}

impl StepCalls {
    fn is_ctx(&self, expr: &Expr) -> bool {
        matches!((expr, &self.ctx), (Expr::Path(p), Some(ctx)) if p.path.is_ident(ctx))
    }

    fn mentions_ctx(&self, tokens: TokenStream) -> bool {
        tokens.into_iter().any(|t| match t {
            TokenTree::Ident(i) => self.ctx.as_ref().is_some_and(|ctx| i == *ctx),
            TokenTree::Group(g) => self.mentions_ctx(g.stream()),
            _ => false,
        })
    }
}

impl<'ast> Visit<'ast> for StepCalls {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if call.method == "step" || call.method == "step_with_origin" {
            match call.args.first() {
                Some(Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                })) => {
                    let name = s.value();
                    if self.seen.contains_key(&name) {
                        self.duplicates.push((name, s.span()));
                    } else {
                        self.seen.insert(name.clone(), s.span());
                        self.order.push(name);
                    }
                }
                _ => self.complete = false,
            }
        }
        // `ctx.emit(..)`, `ctx.step(..)`: the context stays here. Anything else done with
        // it (`helper(&ctx)`, `let c = ctx.clone()`) is visited as a use that may hide steps.
        if self.is_ctx(&call.receiver) && call.method != "clone" {
            for arg in &call.args {
                self.visit_expr(arg);
            }
        } else {
            syn::visit::visit_expr_method_call(self, call);
        }
    }

    fn visit_expr_path(&mut self, path: &'ast syn::ExprPath) {
        if self.ctx.as_ref().is_some_and(|ctx| path.path.is_ident(ctx)) {
            self.complete = false;
        }
    }

    // `tokio::join!(ctx.step("a", ..), ctx.step("b", ..))`: arguments that are expressions
    // are read like the body; other macro input that names the context is a blind spot.
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        match mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated) {
            Ok(args) => {
                for arg in &args {
                    self.visit_expr(arg);
                }
            }
            Err(_) => {
                if self.mentions_ctx(mac.tokens.clone()) {
                    self.complete = false;
                }
            }
        }
    }

    // A nested item is another body; its steps are its own business (and it cannot capture
    // the context, so it only sees one passed in, which is counted above).
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

/// The name the handler binds its context to (`None` for `_`).
fn context_ident(func: &ItemFn) -> Result<Option<Ident>, ()> {
    match func.sig.inputs.first() {
        Some(FnArg::Typed(arg)) => match &*arg.pat {
            Pat::Ident(p) => Ok(Some(p.ident.clone())),
            Pat::Wild(_) => Ok(None),
            _ => Err(()),
        },
        _ => Err(()),
    }
}

pub(super) fn check_step_names(func: &ItemFn, errors: &mut Errors) -> StepNames {
    let ctx = context_ident(func);
    let mut calls = StepCalls {
        complete: ctx.is_ok(),
        ctx: ctx.ok().flatten(),
        seen: HashMap::new(),
        order: Vec::new(),
        duplicates: Vec::new(),
    };
    calls.visit_block(&func.block);
    for (name, second) in calls.duplicates {
        errors.at(
            second,
            format!(
                "step name \"{name}\" is already used at another call site in this task; give each call site its own name (calls from one site, e.g. in a loop, are keyed \"{name}#0\", \"{name}#1\", ...)"
            ),
        );
    }
    for name in &calls.order {
        if let Some(p) = name_problem(name) {
            errors.at(calls.seen[name], format!("invalid step name: {p}"));
        }
    }
    StepNames {
        names: calls.order,
        complete: calls.complete,
    }
}
