//! Parsing of attribute arguments: `key = value, flag, ...`, each kept with its span.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, Lit, LitStr, Path, Token, Type};

/// One `key` or `key = value`.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: Option<Value>,
}

/// The value of an argument.
pub(crate) enum Value {
    Lit(Lit),
    Type(Box<Type>),
    Path(Path),
}

impl Value {
    pub(crate) fn span(&self) -> Span {
        match self {
            Value::Lit(l) => l.span(),
            Value::Type(t) => syn::spanned::Spanned::span(t),
            Value::Path(p) => syn::spanned::Spanned::span(p),
        }
    }
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key = input.call(Ident::parse_any)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(if key == "events" || key == "signals" {
                Value::Type(Box::new(input.parse()?))
            } else if input.peek(syn::Lit) {
                Value::Lit(input.parse()?)
            } else {
                Value::Path(input.call(Path::parse_mod_style)?)
            })
        } else {
            None
        };
        Ok(Self { key, value })
    }
}

/// Parses a comma-separated argument list.
pub(crate) fn parse_args(tokens: proc_macro2::TokenStream) -> syn::Result<Vec<Arg>> {
    let parser = Punctuated::<Arg, Token![,]>::parse_terminated;
    Ok(syn::parse::Parser::parse2(parser, tokens)?
        .into_iter()
        .collect())
}

/// Collects independent errors so one compile reports all of them.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Reports every key given more than once, at its second occurrence.
pub(crate) fn check_duplicates(args: &[Arg], errors: &mut Errors) {
    for (i, arg) in args.iter().enumerate() {
        if args[..i].iter().any(|a| a.key == arg.key) {
            errors.at(
                arg.key.span(),
                format!("`{}` given twice; keep one", arg.key.unraw()),
            );
        }
    }
}

/// The string literal value of `arg`, or an error saying what was expected.
pub(crate) fn lit_str<'a>(arg: &'a Arg, what: &str, errors: &mut Errors) -> Option<&'a LitStr> {
    match &arg.value {
        Some(Value::Lit(Lit::Str(s))) => Some(s),
        Some(v) => {
            errors.at(v.span(), format!("`{}` takes a string: {what}", arg.key));
            None
        }
        None => {
            errors.at(
                arg.key.span(),
                format!("`{}` needs a value: {what}", arg.key),
            );
            None
        }
    }
}
