//! The `#[reduce(...)]` attributes, parsed once, every mistake collected.

use proc_macro2::Span;
use syn::spanned::Spanned as _;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Path};

/// Collects errors so that every mistake in one derive is reported at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub fn at(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    pub fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A value with the span of the attribute that set it.
pub struct At<T> {
    pub value: T,
    pub span: Span,
}

/// How a `state` type's fields sit in the instance.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StateForm {
    /// `state` or `state = "dict"`: the instance `__dict__`.
    Dict,
    /// `state = "slots"`: `__slots__`, the state `(dict or None, slots)`.
    Slots,
}

#[derive(Default)]
pub struct Container {
    pub module: Option<At<String>>,
    pub name: Option<At<String>>,
    pub krate: Option<At<Path>>,
    pub state: Option<At<StateForm>>,
    pub deny_unknown_fields: Option<Span>,
    pub default: Option<Span>,
    pub python_enum: Option<Span>,
    pub flat_variants: Option<Span>,
}

#[derive(Default)]
pub struct Variant {
    pub rename: Option<At<String>>,
    pub value: Option<At<Expr>>,
}

#[derive(Default)]
pub struct Field {
    pub rename: Option<At<String>>,
    pub skip: Option<Span>,
    pub default: Option<At<Option<Path>>>,
    pub with: Option<At<Path>>,
    pub registry: Option<Span>,
    pub bytes: Option<Span>,
    pub serde: Option<Span>,
    pub rest: Option<Span>,
    pub in_dict: Option<Span>,
}

fn set<T>(errors: &mut Errors, slot: &mut Option<T>, value: T, span: Span, key: &str) {
    if slot.is_some() {
        errors.at(
            span,
            format!("duplicate `{key}` in #[reduce(...)]: remove one of them"),
        );
    } else {
        *slot = Some(value);
    }
}

fn string(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<At<String>> {
    let lit: LitStr = meta.value()?.parse()?;
    Ok(At {
        value: lit.value(),
        span: lit.span(),
    })
}

fn path(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<At<Path>> {
    let lit: LitStr = meta.value()?.parse()?;
    Ok(At {
        value: lit.parse()?,
        span: lit.span(),
    })
}

fn key(meta: &syn::meta::ParseNestedMeta<'_>) -> String {
    meta.path
        .get_ident()
        .map(|i| i.to_string())
        .unwrap_or_else(|| {
            let p = &meta.path;
            quote::quote!(#p).to_string()
        })
}

/// Calls `each` on every `key` or `key = value` inside `#[reduce(...)]`.
fn each_meta(
    attrs: &[Attribute],
    errors: &mut Errors,
    mut each: impl FnMut(&syn::meta::ParseNestedMeta<'_>, &str, &mut Errors) -> syn::Result<bool>,
) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("reduce")) {
        let mut local = Errors::default();
        let r = attr.parse_nested_meta(|meta| {
            let k = key(&meta);
            if !each(&meta, &k, &mut local)? {
                local.at(meta.path.span(), format!("unknown attribute `{k}`"));
                // Skip a value so the next key still parses.
                if meta.input.peek(syn::Token![=]) {
                    let _: Expr = meta.value()?.parse()?;
                }
            }
            Ok(())
        });
        if let Err(e) = r {
            errors.push(e);
        }
        if let Err(e) = local.finish() {
            errors.push(e);
        }
    }
}

pub fn container(attrs: &[Attribute], errors: &mut Errors) -> Container {
    let mut c = Container::default();
    each_meta(attrs, errors, |meta, k, errors| {
        let span = meta.path.span();
        match k {
            "module" => set(errors, &mut c.module, string(meta)?, span, k),
            "name" => set(errors, &mut c.name, string(meta)?, span, k),
            "crate" => set(errors, &mut c.krate, path(meta)?, span, k),
            "state" => {
                let form = state_form(meta, errors)?;
                set(errors, &mut c.state, At { value: form, span }, span, k)
            }
            "deny_unknown_fields" => set(errors, &mut c.deny_unknown_fields, span, span, k),
            "default" => set(errors, &mut c.default, span, span, k),
            "python_enum" => set(errors, &mut c.python_enum, span, span, k),
            "flat_variants" => set(errors, &mut c.flat_variants, span, span, k),
            _ => {
                errors.at(
                    span,
                    format!(
                        "unknown container attribute `{k}`: expected one of `module = \"...\"`, `name = \"...\"`, `crate = \"...\"`, `state`, `state = \"slots\"`, `default`, `deny_unknown_fields`, `python_enum`, `flat_variants`"
                    ),
                );
                if meta.input.peek(syn::Token![=]) {
                    let _: Expr = meta.value()?.parse()?;
                }
            }
        }
        Ok(true)
    });
    c
}

pub fn variant(attrs: &[Attribute], errors: &mut Errors) -> Variant {
    let mut v = Variant::default();
    each_meta(attrs, errors, |meta, k, errors| {
        let span = meta.path.span();
        match k {
            "rename" => set(errors, &mut v.rename, string(meta)?, span, k),
            "value" => {
                let e: Expr = meta.value()?.parse()?;
                let ok = matches!(
                    &e,
                    Expr::Lit(ExprLit {
                        lit: Lit::Int(_) | Lit::Str(_),
                        ..
                    })
                ) || matches!(&e, Expr::Unary(u) if matches!(&*u.expr, Expr::Lit(ExprLit { lit: Lit::Int(_), .. })));
                if !ok {
                    errors.at(
                        e.span(),
                        "`value` must be an integer or string literal, as in #[reduce(value = 1)]",
                    );
                }
                set(errors, &mut v.value, At { value: e, span }, span, k)
            }
            _ => {
                errors.at(
                    span,
                    format!("unknown variant attribute `{k}`: expected `rename = \"...\"` or `value = ...`"),
                );
                if meta.input.peek(syn::Token![=]) {
                    let _: Expr = meta.value()?.parse()?;
                }
            }
        }
        Ok(true)
    });
    v
}

pub fn field(attrs: &[Attribute], errors: &mut Errors) -> Field {
    let mut f = Field::default();
    each_meta(attrs, errors, |meta, k, errors| {
        let span = meta.path.span();
        match k {
            "rename" => set(errors, &mut f.rename, string(meta)?, span, k),
            "skip" => set(errors, &mut f.skip, span, span, k),
            "default" => {
                let p = if meta.input.peek(syn::Token![=]) {
                    Some(path(meta)?.value)
                } else {
                    None
                };
                set(errors, &mut f.default, At { value: p, span }, span, k)
            }
            "with" => set(errors, &mut f.with, path(meta)?, span, k),
            "registry" => set(errors, &mut f.registry, span, span, k),
            "bytes" => set(errors, &mut f.bytes, span, span, k),
            "serde" => set(errors, &mut f.serde, span, span, k),
            "rest" => set(errors, &mut f.rest, span, span, k),
            "in_dict" => set(errors, &mut f.in_dict, span, span, k),
            _ => {
                errors.at(
                    span,
                    format!(
                        "unknown field attribute `{k}`: expected one of `rename = \"...\"`, `skip`, `default`, `default = \"path\"`, `with = \"module\"`, `registry`, `bytes`, `serde`, `rest`, `in_dict`"
                    ),
                );
                if meta.input.peek(syn::Token![=]) {
                    let _: Expr = meta.value()?.parse()?;
                }
            }
        }
        Ok(true)
    });
    f
}

/// `state` alone, or `state = "dict"` / `state = "slots"`.
fn state_form(
    meta: &syn::meta::ParseNestedMeta<'_>,
    errors: &mut Errors,
) -> syn::Result<StateForm> {
    if !meta.input.peek(syn::Token![=]) {
        return Ok(StateForm::Dict);
    }
    let lit: LitStr = meta.value()?.parse()?;
    Ok(match lit.value().as_str() {
        "dict" => StateForm::Dict,
        "slots" => StateForm::Slots,
        other => {
            errors.at(
                lit.span(),
                format!(
                    "unknown state form `{other:?}`: expected `state` (or `state = \"dict\"`) for an instance __dict__, or `state = \"slots\"` for a class with __slots__"
                ),
            );
            StateForm::Dict
        }
    })
}
