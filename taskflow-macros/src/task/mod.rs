//! `#[task]`: an `async fn` becomes a zero-sized durable task handle.
//!
//! Parse the keys (`options.rs`), check the signature (`signature.rs`) and the step names
//! (`steps.rs`), then generate the handle and its `Task` impl (`generate.rs`).

mod generate;
mod options;
mod signature;
mod steps;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{FnArg, ItemFn};

use crate::attr::Errors;
use crate::names::name_problem;

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
    let options = options::parse_options(attr, &mut errors);
    let sig = signature::check_signature(&func, &options, &mut errors);
    let steps = steps::check_step_names(&func, &mut errors);
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
        (Ok(()), Some(sig)) => generate::generate(&func, &options, &sig, &steps),
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
