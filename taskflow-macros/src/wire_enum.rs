//! `#[events]` and `#[signals]`: an enum becomes a typed set of wire messages, each variant a
//! name (snake_case, or set with `#[event(name)]` / `#[signal(name)]`) with a JSON payload.
//! The two differ only in the trait they implement and the names they reserve.

use heck::ToSnakeCase;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, ItemEnum, LitStr, Type};

use crate::attr::{self, Errors};
use crate::names::{event_name_problem, signal_name_problem};

const ENUM_KEYS: &str = "crate";

/// What one of the two attributes generates and checks.
pub(crate) struct Kind {
    /// The attribute on the enum (`events`).
    attr: &'static str,
    /// The attribute on a variant (`event`).
    variant_attr: &'static str,
    /// What the enum holds, for "goes on an enum: ..." (`kind of progress event`).
    variant_is: &'static str,
    /// The runtime trait (`Events`).
    trait_name: &'static str,
    /// The schema and TypeScript helpers of `__private`.
    schema_fn: &'static str,
    typescript_fn: &'static str,
    /// Why a wire name is refused, with the fix.
    problem: fn(&str) -> Option<String>,
}

/// `#[events]`: progress events a task emits.
pub(crate) const EVENTS: Kind = Kind {
    attr: "events",
    variant_attr: "event",
    variant_is: "one variant per kind of progress event",
    trait_name: "Events",
    schema_fn: "events_schema",
    typescript_fn: "typescript",
    problem: event_name_problem,
};

/// `#[signals]`: the signals a task accepts.
pub(crate) const SIGNALS: Kind = Kind {
    attr: "signals",
    variant_attr: "signal",
    variant_is: "one variant per signal the task accepts",
    trait_name: "Signals",
    schema_fn: "signals_schema",
    typescript_fn: "signals_typescript",
    problem: signal_name_problem,
};

/// The JSON shape of one variant.
enum Shape {
    /// `Started` → `{}`.
    Unit,
    /// `StageDone(StageInfo)` → the inner value.
    Newtype(Box<Type>),
    /// `Tick { value: u32 }` → an object of the fields.
    Struct(Vec<Field>),
}

struct Field {
    ident: Ident,
    ty: Type,
    /// `#[serde(...)]` attributes, moved to the hidden payload structs.
    serde: Vec<Attribute>,
}

struct Variant {
    ident: Ident,
    wire: String,
    wire_span: Span,
    shape: Shape,
}

pub(crate) fn expand(kind: &Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut item: ItemEnum = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                format!("#[{}] goes on an enum: {}", kind.attr, kind.variant_is),
            )
            .to_compile_error();
            return quote! { #item #e };
        }
    };
    let mut errors = Errors::default();
    let krate = crate_path(kind, attr, &mut errors);
    let variants = model(kind, &mut item, &mut errors);
    let result = errors.finish();
    match result {
        Ok(()) => generate(kind, &item, &variants, &krate),
        Err(e) => {
            // Emit the enum and a stub of what it would implement, so one mistake gives one
            // error, not a cascade at every use (`Events is not satisfied`, no `typescript`).
            let e = e.to_compile_error();
            let stub = stub(kind, &item, &krate);
            quote! { #item #stub #e }
        }
    }
}

fn crate_path(kind: &Kind, attr: TokenStream, errors: &mut Errors) -> syn::Path {
    let default: syn::Path = syn::parse_quote!(::taskflow);
    let args = match attr::parse_args(attr) {
        Ok(args) => args,
        Err(e) => {
            errors.push(e);
            return default;
        }
    };
    attr::check_duplicates(&args, errors);
    let mut path = default;
    for arg in &args {
        if arg.key == "crate" {
            if let Some(s) =
                attr::lit_str(arg, "the path of a renamed `taskflow` dependency", errors)
            {
                match s.parse::<syn::Path>() {
                    Ok(p) => path = p,
                    Err(_) => errors.at(s.span(), "`crate` must be a path, like \"my_taskflow\""),
                }
            }
        } else {
            errors.at(
                arg.key.span(),
                format!(
                    "unknown #[{}] key `{}`; accepted keys: {ENUM_KEYS}",
                    kind.attr, arg.key
                ),
            );
        }
    }
    path
}

fn model(kind: &Kind, item: &mut ItemEnum, errors: &mut Errors) -> Vec<Variant> {
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.at(
            item.generics.span(),
            format!(
                "#[{}] enums cannot be generic: every {} needs one fixed wire shape; use concrete payload types",
                kind.attr, kind.variant_attr
            ),
        );
    }
    let mut variants: Vec<Variant> = Vec::new();
    for v in &mut item.variants {
        let override_name = take_variant_attr(kind, &mut v.attrs, errors);
        let (wire, wire_span) = match &override_name {
            Some(lit) => (lit.value(), lit.span()),
            None => (v.ident.to_string().to_snake_case(), v.ident.span()),
        };
        if let Some(problem) = (kind.problem)(&wire) {
            errors.at(wire_span, problem);
        }
        if let Some(first) = variants.iter().find(|o| o.wire == wire) {
            errors.at(
                wire_span,
                format!(
                    "two variants have the wire name `{wire}` (`{}` and `{}`); give one of them another #[{}(name = \"...\")]",
                    first.ident, v.ident, kind.variant_attr
                ),
            );
        }
        let shape = match &mut v.fields {
            Fields::Unit => Shape::Unit,
            Fields::Unnamed(f) if f.unnamed.len() == 1 => {
                Shape::Newtype(Box::new(f.unnamed[0].ty.clone()))
            }
            Fields::Unnamed(f) => {
                errors.at(
                    f.span(),
                    format!(
                        "a tuple variant with {} fields has no JSON shape; use a struct variant `{} {{ a: A, b: B }}` or one payload type `{}(Payload)`",
                        f.unnamed.len(),
                        v.ident,
                        v.ident
                    ),
                );
                Shape::Unit
            }
            Fields::Named(f) => Shape::Struct(
                f.named
                    .iter_mut()
                    .map(|field| {
                        let (serde, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut field.attrs)
                            .into_iter()
                            .partition(|a| a.path().is_ident("serde"));
                        field.attrs = rest;
                        Field {
                            ident: field.ident.clone().expect("named field"),
                            ty: field.ty.clone(),
                            serde,
                        }
                    })
                    .collect(),
            ),
        };
        variants.push(Variant {
            ident: v.ident.clone(),
            wire,
            wire_span,
            shape,
        });
    }
    variants
}

/// Removes `#[event(...)]` (`#[signal(...)]`) from a variant and returns its `name`.
fn take_variant_attr(
    kind: &Kind,
    attrs: &mut Vec<Attribute>,
    errors: &mut Errors,
) -> Option<LitStr> {
    let mut name = None;
    let mut kept = Vec::new();
    for a in std::mem::take(attrs) {
        if !a.path().is_ident(kind.variant_attr) {
            kept.push(a);
            continue;
        }
        let args = match a
            .meta
            .require_list()
            .and_then(|l| attr::parse_args(l.tokens.clone()))
        {
            Ok(args) => args,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        attr::check_duplicates(&args, errors);
        for arg in &args {
            if arg.key == "name" {
                name = attr::lit_str(arg, "the wire name", errors).cloned();
            } else {
                errors.at(
                    arg.key.span(),
                    format!(
                        "unknown #[{}] key `{}`; accepted keys: name",
                        kind.variant_attr, arg.key
                    ),
                );
            }
        }
    }
    *attrs = kept;
    name
}

fn generate(kind: &Kind, item: &ItemEnum, variants: &[Variant], krate: &syn::Path) -> TokenStream {
    let ident = &item.ident;
    let private = quote!(#krate::__private);
    let trait_ident = Ident::new(kind.trait_name, Span::call_site());
    let schema_fn = Ident::new(kind.schema_fn, Span::call_site());
    let typescript_fn = Ident::new(kind.typescript_fn, Span::call_site());
    let serde_path = format!(
        "{}::__private::serde",
        quote!(#krate).to_string().replace(' ', "")
    );
    let schemars_path = format!(
        "{}::__private::schemars",
        quote!(#krate).to_string().replace(' ', "")
    );
    let names = variants.iter().map(|v| &v.wire);
    let mut name_arms = Vec::new();
    let mut payload_arms = Vec::new();
    let mut decode_arms = Vec::new();
    let mut schema_entries = Vec::new();
    let mut helpers = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        let vident = &v.ident;
        let wire = LitStr::new(&v.wire, v.wire_span);
        let ser = format_ident!("__TaskflowSer{}", i);
        let de = format_ident!("__TaskflowDe{}", i);
        match &v.shape {
            Shape::Unit => {
                name_arms.push(quote!(Self::#vident => #wire));
                payload_arms.push(quote! {
                    Self::#vident => ::core::result::Result::Ok(
                        #private::serde_json::Value::Object(#private::serde_json::Map::new())
                    )
                });
                decode_arms.push(quote!(#wire => ::core::result::Result::Ok(Self::#vident)));
                schema_entries.push(quote!((#wire, #private::unit_schema())));
            }
            Shape::Newtype(ty) => {
                name_arms.push(quote!(Self::#vident(..) => #wire));
                payload_arms.push(quote! {
                    Self::#vident(__inner) => #private::serde_json::to_value(__inner)
                });
                decode_arms.push(quote! {
                    #wire => #private::serde_json::from_value::<#ty>(__payload)
                        .map(Self::#vident)
                        .map_err(|__source| #private::payload_error(__name, __source))
                });
                let assert = quote_spanned! {ty.span()=>
                    <#ty as #private::EventPayload>::payload_schema()
                };
                schema_entries.push(quote!((#wire, #assert)));
            }
            Shape::Struct(fields) => {
                let fidents: Vec<_> = fields.iter().map(|f| &f.ident).collect();
                let ftys: Vec<_> = fields.iter().map(|f| &f.ty).collect();
                let fserde: Vec<_> = fields.iter().map(|f| &f.serde).collect();
                name_arms.push(quote!(Self::#vident { .. } => #wire));
                payload_arms.push(quote! {
                    Self::#vident { #(#fidents),* } => #private::serde_json::to_value(#ser { #(#fidents),* })
                });
                decode_arms.push(quote! {
                    #wire => #private::serde_json::from_value::<#de>(__payload)
                        .map(|__p| Self::#vident { #(#fidents: __p.#fidents),* })
                        .map_err(|__source| #private::payload_error(__name, __source))
                });
                schema_entries
                    .push(quote!((#wire, <#de as #private::EventPayload>::payload_schema())));
                helpers.push(quote! {
                    #[derive(#private::serde::Serialize)]
                    #[serde(crate = #serde_path)]
                    struct #ser<'__a> { #( #(#fserde)* #fidents: &'__a #ftys ),* }

                    #[derive(#private::serde::Serialize, #private::serde::Deserialize, #private::schemars::JsonSchema)]
                    #[serde(crate = #serde_path)]
                    #[schemars(crate = #schemars_path, rename = #wire)]
                    struct #de { #( #(#fserde)* #fidents: #ftys ),* }
                });
            }
        }
    }
    let (name_body, payload_body) = if variants.is_empty() {
        (quote!(match *self {}), quote!(match *self {}))
    } else {
        (
            quote!(match self { #(#name_arms,)* }),
            quote!(match self { #(#payload_arms,)* }),
        )
    };
    let ident_str = ident.to_string();
    quote! {
        #item

        #[doc(hidden)]
        const _: () = {
            #(#helpers)*

            #[automatically_derived]
            impl #private::#trait_ident for #ident {
                const NAMES: &'static [&'static str] = &[#(#names),*];

                fn name(&self) -> &'static str {
                    #name_body
                }

                fn to_payload(
                    &self,
                ) -> ::core::result::Result<#private::serde_json::Value, #private::serde_json::Error> {
                    #payload_body
                }

                fn decode(
                    __name: &str,
                    __payload: #private::serde_json::Value,
                ) -> ::core::result::Result<Self, #private::EventDecodeError> {
                    let _ = &__payload;
                    match __name {
                        #(#decode_arms,)*
                        _ => ::core::result::Result::Err(#private::unknown_event(__name)),
                    }
                }
            }

            #[automatically_derived]
            impl #ident {
                /// JSON Schema of every variant's payload, keyed by wire name.
                #[must_use]
                pub fn json_schema() -> #private::serde_json::Value {
                    #private::#schema_fn(#ident_str, &[#(#schema_entries),*])
                }

                /// A TypeScript declaration of the name → payload map (64-bit integers as
                /// `number | string`, as the bridge sends them with `js_safe_integers`).
                #[must_use]
                pub fn typescript() -> ::std::string::String {
                    #private::#typescript_fn(#ident_str, &Self::json_schema(), true)
                }
            }
        };
    }
}

/// What `generate` would implement, with bodies that do nothing: emitted beside the errors.
fn stub(kind: &Kind, item: &ItemEnum, krate: &syn::Path) -> TokenStream {
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        // The generics are the error; a stub would need them and add errors of its own.
        return TokenStream::new();
    }
    let private = quote!(#krate::__private);
    let ident = &item.ident;
    let trait_ident = Ident::new(kind.trait_name, Span::call_site());
    quote! {
        #[doc(hidden)]
        const _: () = {
            #[automatically_derived]
            impl #private::#trait_ident for #ident {
                const NAMES: &'static [&'static str] = &[];

                fn name(&self) -> &'static str {
                    ""
                }

                fn to_payload(
                    &self,
                ) -> ::core::result::Result<#private::serde_json::Value, #private::serde_json::Error> {
                    ::core::result::Result::Ok(#private::serde_json::Value::Null)
                }

                fn decode(
                    __name: &str,
                    _: #private::serde_json::Value,
                ) -> ::core::result::Result<Self, #private::EventDecodeError> {
                    ::core::result::Result::Err(#private::unknown_event(__name))
                }
            }

            #[automatically_derived]
            impl #ident {
                #[doc(hidden)]
                #[must_use]
                pub fn json_schema() -> #private::serde_json::Value {
                    #private::serde_json::Value::Null
                }

                #[doc(hidden)]
                #[must_use]
                pub fn typescript() -> ::std::string::String {
                    ::std::string::String::new()
                }
            }
        };
    }
}
