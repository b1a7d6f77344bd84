//! The derive input, parsed once: the type, its variants and fields, each
//! with its attributes.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Member, Type};

use crate::attr::{self, Errors};

pub struct Input<'a> {
    pub ident: &'a Ident,
    pub generics: &'a syn::Generics,
    pub attrs: attr::Container,
    pub body: Body<'a>,
    pub span: Span,
}

pub enum Body<'a> {
    Struct(Shape<'a>),
    Enum(Vec<Variant<'a>>),
}

/// The fields of a struct or a variant.
pub struct Shape<'a> {
    pub style: Style,
    pub fields: Vec<Field<'a>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Named,
    Tuple,
    Unit,
}

pub struct Variant<'a> {
    pub ident: &'a Ident,
    pub attrs: attr::Variant,
    pub shape: Shape<'a>,
    pub discriminant: Option<&'a syn::Expr>,
}

pub struct Field<'a> {
    pub member: Member,
    pub ty: &'a Type,
    pub attrs: attr::Field,
    pub span: Span,
}

impl Field<'_> {
    /// The name used in state dicts and error paths.
    pub fn name(&self) -> String {
        if let Some(r) = &self.attrs.rename {
            return r.value.clone();
        }
        match &self.member {
            Member::Named(i) => i.to_string().trim_start_matches("r#").to_owned(),
            Member::Unnamed(i) => i.index.to_string(),
        }
    }

    pub fn skipped(&self) -> bool {
        self.attrs.skip.is_some()
    }

    /// The `rest` field, which holds the attributes no other field names.
    pub fn is_rest(&self) -> bool {
        self.attrs.rest.is_some()
    }

    /// The Rust field's name, for error messages.
    pub fn rust_name(&self) -> String {
        match &self.member {
            Member::Named(i) => i.to_string().trim_start_matches("r#").to_owned(),
            Member::Unnamed(i) => i.index.to_string(),
        }
    }
}

fn shape<'a>(fields: &'a Fields, errors: &mut Errors) -> Shape<'a> {
    let style = match fields {
        Fields::Named(_) => Style::Named,
        Fields::Unnamed(_) => Style::Tuple,
        Fields::Unit => Style::Unit,
    };
    let fields = fields
        .iter()
        .enumerate()
        .map(|(i, f)| Field {
            member: match &f.ident {
                Some(id) => Member::Named(id.clone()),
                None => Member::Unnamed(i.into()),
            },
            ty: &f.ty,
            attrs: attr::field(&f.attrs, errors),
            span: f.span(),
        })
        .collect();
    Shape { style, fields }
}

pub fn parse<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Option<Input<'a>> {
    let attrs = attr::container(&input.attrs, errors);
    let body = match &input.data {
        Data::Struct(s) => Body::Struct(shape(&s.fields, errors)),
        Data::Enum(e) => Body::Enum(
            e.variants
                .iter()
                .map(|v| Variant {
                    ident: &v.ident,
                    attrs: attr::variant(&v.attrs, errors),
                    shape: shape(&v.fields, errors),
                    discriminant: v.discriminant.as_ref().map(|(_, e)| e),
                })
                .collect(),
        ),
        Data::Union(u) => {
            errors.at(
                u.union_token.span,
                "#[derive(Reduce)] does not support unions: implement reduce::Reduce and reduce::Construct by hand",
            );
            return None;
        }
    };
    Some(Input {
        ident: &input.ident,
        generics: &input.generics,
        attrs,
        body,
        span: input.ident.span(),
    })
}
