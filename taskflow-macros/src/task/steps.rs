//! Literal step names in the body: each call site its own name, each name valid.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::visit::Visit;
use syn::{ItemFn, Lit};

use crate::attr::Errors;
use crate::names::name_problem;

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

pub(super) fn check_step_names(func: &ItemFn, errors: &mut Errors) {
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
