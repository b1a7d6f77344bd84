//! The generated code: `Reduce`, `Construct` and the link-time registration,
//! inside `const _: () = { ... };`, naming the runtime only through
//! `<crate>::__private` and fully qualified paths.

use proc_macro2::{TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{parse_quote, Expr, GenericParam, Ident, Path, Type};

use crate::ast::{Body, Field, Input, Shape, Style, Variant};
use crate::attr::StateForm;

pub fn derive(input: &Input<'_>) -> TokenStream {
    let krate: Path = input
        .attrs
        .krate
        .as_ref()
        .map(|k| k.value.clone())
        .unwrap_or_else(|| parse_quote!(::reduce));
    let cx = Cx {
        krate,
        input,
        module: match &input.attrs.module {
            Some(m) => {
                let m = &m.value;
                quote!(#m)
            }
            None => quote!(__reduce_module()),
        },
        name: input
            .attrs
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| input.ident.to_string()),
    };
    let reduce = cx.reduce_impl();
    let construct = cx.construct_impl();
    let registration = cx.registration();
    let krate = &cx.krate;
    quote! {
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            /// The module as Python spells it: the Rust module path with dots.
            #[allow(dead_code)]
            fn __reduce_module() -> &'static str {
                #krate::__private::dotted(::core::module_path!())
            }
            #reduce
            #construct
            #registration
        };
    }
}

struct Cx<'a> {
    krate: Path,
    input: &'a Input<'a>,
    module: TokenStream,
    name: String,
}

/// Whether `ty` mentions the identifier `param`.
fn mentions(ty: &Type, param: &Ident) -> bool {
    fn walk(ts: TokenStream, param: &Ident) -> bool {
        ts.into_iter().any(|tt| match tt {
            TokenTree::Ident(i) => &i == param,
            TokenTree::Group(g) => walk(g.stream(), param),
            _ => false,
        })
    }
    walk(quote!(#ty), param)
}

/// Whether `ty` mentions the lifetime `lt`, token by token: `'a` is a `'`
/// joined to the identifier `a`, so `'ab` and `'static` do not mention it.
fn mentions_lifetime(ty: &Type, lt: &syn::Lifetime) -> bool {
    fn walk(ts: TokenStream, name: &Ident) -> bool {
        let mut tick = false;
        for tt in ts {
            match tt {
                TokenTree::Punct(p) if p.as_char() == '\'' => {
                    tick = true;
                    continue;
                }
                TokenTree::Ident(i) if tick && &i == name => return true,
                TokenTree::Group(g) if walk(g.stream(), name) => return true,
                _ => {}
            }
            tick = false;
        }
        false
    }
    walk(quote!(#ty), &lt.ident)
}

impl Cx<'_> {
    fn all_fields(&self) -> Vec<&Field<'_>> {
        match &self.input.body {
            Body::Struct(s) => s.fields.iter().collect(),
            Body::Enum(vs) => vs.iter().flat_map(|v| v.shape.fields.iter()).collect(),
        }
    }

    /// The impl generics with bounds inferred per type parameter: a
    /// parameter that appears in a field written the default way gets
    /// `bound`; fields that mention a lifetime parameter need their own type
    /// to satisfy it.
    fn generics(&self, bound: TokenStream, read: bool) -> (TokenStream, TokenStream, TokenStream) {
        let mut generics = self.input.generics.clone();
        let fields = self.all_fields();
        let default_fields: Vec<&&Field<'_>> = fields
            .iter()
            .filter(|f| {
                !f.skipped()
                    && !f.is_rest()
                    && f.attrs.with.is_none()
                    && f.attrs.registry.is_none()
                    && f.attrs.bytes.is_none()
                    && f.attrs.serde.is_none()
            })
            .collect();
        let mut preds: Vec<syn::WherePredicate> = Vec::new();
        for p in self.input.generics.params.iter() {
            match p {
                GenericParam::Type(t) => {
                    let id = &t.ident;
                    if default_fields.iter().any(|f| mentions(f.ty, id)) {
                        preds.push(parse_quote!(#id: #bound));
                    }
                    if read
                        && fields
                            .iter()
                            .any(|f| f.skipped() && f.attrs.default.is_none() && mentions(f.ty, id))
                    {
                        let ty = fields
                            .iter()
                            .find(|f| f.skipped() && mentions(f.ty, id))
                            .map(|f| f.ty);
                        if let Some(ty) = ty {
                            preds.push(parse_quote!(#ty: ::core::default::Default));
                        }
                    }
                    for f in fields.iter().filter(|f| f.is_rest() && mentions(f.ty, id)) {
                        let ty = f.ty;
                        let krate = &self.krate;
                        preds.push(parse_quote!(#ty: #krate::Rest));
                    }
                    if fields
                        .iter()
                        .any(|f| f.attrs.registry.is_some() && mentions(f.ty, id))
                    {
                        preds.push(parse_quote!(#id: 'static));
                    }
                }
                GenericParam::Lifetime(l) => {
                    for f in &default_fields {
                        if read && mentions_lifetime(f.ty, &l.lifetime) {
                            let ty = f.ty;
                            preds.push(parse_quote!(#ty: #bound));
                        }
                    }
                }
                GenericParam::Const(_) => {}
            }
        }
        generics.make_where_clause().predicates.extend(preds);
        let (i, t, w) = generics.split_for_impl();
        (quote!(#i), quote!(#t), quote!(#w))
    }

    fn is_generic(&self) -> bool {
        self.input
            .generics
            .params
            .iter()
            .any(|p| matches!(p, GenericParam::Type(_) | GenericParam::Lifetime(_)))
    }

    /// An expression of type `&dyn Reduce` (or `&impl Reduce`) writing the
    /// field reached by `access` (an expression of type `&FieldType`).
    fn field_ref(&self, f: &Field<'_>, access: TokenStream) -> TokenStream {
        let krate = &self.krate;
        let span = f.span;
        if let Some(with) = &f.attrs.with {
            let path = &with.value;
            quote_spanned!(span=> &#krate::__private::FnReduce(|__s: &mut #krate::Saver<'_, '_>| #path::reduce(#access, __s)))
        } else if f.attrs.registry.is_some() {
            quote_spanned!(span=> &#krate::__private::FnReduce(|__s: &mut #krate::Saver<'_, '_>| __s.registered_typed(#access)))
        } else if f.attrs.bytes.is_some() {
            quote_spanned!(span=> &#krate::__private::FnReduce(|__s: &mut #krate::Saver<'_, '_>| #krate::bytes::reduce(#access, __s)))
        } else if f.attrs.serde.is_some() {
            quote_spanned!(span=> &#krate::__private::FnReduce(|__s: &mut #krate::Saver<'_, '_>| #krate::serde::field::reduce(#access, __s)))
        } else {
            quote_spanned!(span=> #access)
        }
    }

    /// Reads a field from `value` (a `&Value`) seen from node `at`.
    fn field_read(&self, f: &Field<'_>, at: &Ident, value: TokenStream) -> TokenStream {
        let krate = &self.krate;
        let name = f.name();
        let ty = f.ty;
        let span = f.span;
        if let Some(with) = &f.attrs.with {
            let path = &with.value;
            quote_spanned!(span=> #at.with_field(#name, #value, #path::construct)?)
        } else if f.attrs.registry.is_some() {
            quote_spanned!(span=> #at.with_field(#name, #value, |__n: #krate::Node<'_>| __n.registered::<#ty>())?)
        } else if f.attrs.bytes.is_some() {
            quote_spanned!(span=> #at.with_field(#name, #value, #krate::bytes::construct)?)
        } else if f.attrs.serde.is_some() {
            quote_spanned!(span=> #at.with_field(#name, #value, #krate::serde::field::construct)?)
        } else {
            quote_spanned!(span=> #at.field::<#ty>(#name, #value)?)
        }
    }

    fn skipped_value(&self, f: &Field<'_>) -> TokenStream {
        match default_path(f) {
            Some(path) => quote!(#path()),
            None => quote!(::core::default::Default::default()),
        }
    }

    /// `(a, b, ...)` as a written argument tuple, from `&field` accesses.
    fn args_tuple(
        &self,
        shape: &Shape<'_>,
        access: impl Fn(&Field<'_>) -> TokenStream,
    ) -> TokenStream {
        let krate = &self.krate;
        let written: Vec<_> = shape.fields.iter().filter(|f| !f.skipped()).collect();
        let n = written.len();
        let saves = written.iter().map(|f| {
            let r = self.field_ref(f, access(f));
            quote!(__s.save(#r)?;)
        });
        quote! {
            &#krate::__private::FnReduce(|__s: &mut #krate::Saver<'_, '_>| {
                __s.tuple(#n, |__s| {
                    #(#saves)*
                    ::core::result::Result::Ok(())
                })
            })
        }
    }

    /// Builds `constructor { fields }` from an argument node `args`.
    fn construct_args(
        &self,
        shape: &Shape<'_>,
        constructor: TokenStream,
        global: TokenStream,
    ) -> TokenStream {
        let args = format_ident!("__args");
        let written: Vec<_> = shape.fields.iter().filter(|f| !f.skipped()).collect();
        let n = written.len();
        let names: Vec<String> = written.iter().map(|f| f.name()).collect();
        let expected = names.join(", ");
        let mut k = 0usize;
        let inits: Vec<TokenStream> = shape
            .fields
            .iter()
            .map(|f| {
                let value = if f.skipped() {
                    self.skipped_value(f)
                } else {
                    let i = k;
                    k += 1;
                    self.field_read(f, &args, quote!(&__items[#i]))
                };
                match &f.member {
                    syn::Member::Named(id) => quote!(#id: #value),
                    syn::Member::Unnamed(_) => value,
                }
            })
            .collect();
        let body = match shape.style {
            Style::Named => quote!(#constructor { #(#inits),* }),
            Style::Tuple => quote!(#constructor ( #(#inits),* )),
            Style::Unit => quote!(#constructor),
        };
        quote! {{
            let __items = #args.items()?;
            if __items.len() != #n {
                return ::core::result::Result::Err(#args.error_msg(::std::format!(
                    "{} takes {} arguments ({}), found {}",
                    #global, #n, #expected, __items.len()
                )));
            }
            ::core::result::Result::Ok(#body)
        }}
    }

    fn reduce_impl(&self) -> TokenStream {
        let krate = &self.krate;
        let ident = self.input.ident;
        let module = &self.module;
        let name = &self.name;
        let (impl_g, ty_g, where_c) = self.generics(quote!(#krate::Reduce), false);
        let body = match &self.input.body {
            Body::Struct(shape) if self.input.attrs.state.is_some() => self.reduce_state(shape),
            Body::Struct(shape) => {
                let args = self.args_tuple(shape, |f| {
                    let m = &f.member;
                    quote!(&self.#m)
                });
                quote!(__s.reduction(#module, #name).args(#args).save())
            }
            Body::Enum(variants) if self.input.attrs.python_enum.is_some() => {
                // A member is one object in Python: written once per
                // pickle, then fetched from the memo, as CPython writes
                // `[Color.RED, Color.RED]`. Its identity is the address of
                // its byte in a static of the impl.
                let n = variants.len();
                let arms = variants.iter().enumerate().map(|(i, v)| {
                    let vid = v.ident;
                    let value = self.enum_value(v, i);
                    quote!(Self::#vid => __s.shared(
                        ::core::ptr::addr_of!(__MEMBERS[#i]) as usize,
                        |__s| __s.reduction(#module, #name).args(&(#value,)).save(),
                    ))
                });
                quote! {
                    static __MEMBERS: [u8; #n] = [0; #n];
                    match self { #(#arms,)* }
                }
            }
            Body::Enum(variants) => {
                let arms = variants.iter().map(|v| {
                    let vname = self.variant_name(v);
                    let pat = self.variant_pattern(v);
                    let args = self.args_tuple(&v.shape, |f| {
                        let b = binding(f);
                        quote!(#b)
                    });
                    quote!(#pat => __s.reduction(#module, #vname).args(#args).save())
                });
                quote!(match self { #(#arms,)* })
            }
        };
        quote! {
            #[automatically_derived]
            impl #impl_g #krate::Reduce for #ident #ty_g #where_c {
                fn reduce(&self, __s: &mut #krate::Saver<'_, '_>) -> #krate::Result<()> {
                    #body
                }
            }
        }
    }

    /// Writes an instance: its fields (and `rest`) as its state, a
    /// `__dict__` or, for `state = "slots"`, `(dict or None, slots)`.
    fn reduce_state(&self, shape: &Shape<'_>) -> TokenStream {
        let krate = &self.krate;
        let module = &self.module;
        let name = &self.name;
        let slots_form = self.slots_form();
        let written = shape.fields.iter().filter(|f| !f.skipped() && !f.is_rest());
        let (in_dict, in_slots): (Vec<_>, Vec<_>) =
            written.partition(|f| !slots_form || f.attrs.in_dict.is_some());
        let (nd, ns) = (in_dict.len(), in_slots.len());
        // The attribute names, hashed once per process rather than once
        // per write (each is an interned `str` in the pickle).
        let keys: Vec<String> = in_dict.iter().chain(&in_slots).map(|f| f.name()).collect();
        let entry = |(i, f): (usize, &&Field<'_>)| {
            let member = &f.member;
            let r = self.field_ref(f, quote!(&self.#member));
            quote!((&#krate::__private::FieldName(&__NAMES, #i) as &dyn #krate::Reduce, #r as &dyn #krate::Reduce))
        };
        let rest_field = shape.fields.iter().find(|f| f.is_rest());
        if !slots_form && rest_field.is_none() {
            // The common form: each field written by its own type's code,
            // not through `dyn Reduce`.
            let fields = in_dict.iter().enumerate().map(|(i, f)| {
                let member = &f.member;
                let r = self.field_ref(f, quote!(&self.#member));
                quote!(__d.field(#i, #r)?;)
            });
            return quote! {
                static __NAMES: #krate::__private::FieldNames =
                    #krate::__private::FieldNames::new(&[#(#keys),*]);
                #krate::__private::save_state(__s, #module, #name, &__NAMES, #nd, |__d| {
                    #(#fields)*
                    ::core::result::Result::Ok(())
                })
            };
        }
        let dict = in_dict.iter().enumerate().map(entry);
        let slots = in_slots.iter().enumerate().map(|(i, f)| entry((nd + i, f)));
        let rest = rest_field.map(|f| {
            let member = &f.member;
            let part = if !slots_form || f.attrs.in_dict.is_some() {
                quote!(__dict)
            } else {
                quote!(__slots)
            };
            // Spanned at the field's type: a type that is no `Rest` is an
            // error there.
            let attributes = {
                let ty = f.ty;
                quote_spanned!(ty.span()=> <#ty as #krate::Rest>::attributes(&self.#member))
            };
            quote! {
                let __rest = #attributes;
                let #part: ::std::vec::Vec<(&dyn #krate::Reduce, &dyn #krate::Reduce)> =
                    #part.iter().copied().chain(__rest).collect();
            }
        });
        quote! {
            static __NAMES: #krate::__private::FieldNames =
                #krate::__private::FieldNames::new(&[#(#keys),*]);
            let __dict: [(&dyn #krate::Reduce, &dyn #krate::Reduce); #nd] = [#(#dict),*];
            let __slots: [(&dyn #krate::Reduce, &dyn #krate::Reduce); #ns] = [#(#slots),*];
            #rest
            #krate::__private::save_instance(__s, #module, #name, #slots_form, &__dict, &__slots)
        }
    }

    fn slots_form(&self) -> bool {
        self.input
            .attrs
            .state
            .as_ref()
            .is_some_and(|s| s.value == StateForm::Slots)
    }

    fn variant_name(&self, v: &Variant<'_>) -> String {
        let own = v
            .attrs
            .rename
            .as_ref()
            .map(|r| r.value.clone())
            .unwrap_or_else(|| v.ident.to_string());
        if self.input.attrs.flat_variants.is_some() || v.attrs.rename.is_some() {
            own
        } else {
            format!("{}.{}", self.name, own)
        }
    }

    fn variant_pattern(&self, v: &Variant<'_>) -> TokenStream {
        let vid = v.ident;
        let binds = v.shape.fields.iter().map(|f| {
            let b = if f.skipped() {
                quote!(_)
            } else {
                let b = binding(f);
                quote!(#b)
            };
            match &f.member {
                syn::Member::Named(id) => quote!(#id: #b),
                syn::Member::Unnamed(_) => b,
            }
        });
        match v.shape.style {
            Style::Named => quote!(Self::#vid { #(#binds),* }),
            Style::Tuple => quote!(Self::#vid ( #(#binds),* )),
            Style::Unit => quote!(Self::#vid),
        }
    }

    fn enum_value(&self, v: &Variant<'_>, index: usize) -> TokenStream {
        if let Some(value) = &v.attrs.value {
            let e: &Expr = &value.value;
            return quote!(#e);
        }
        if let Some(d) = v.discriminant {
            return quote!(#d);
        }
        let i = index as i64;
        quote!(#i)
    }

    fn construct_impl(&self) -> TokenStream {
        let krate = &self.krate;
        let ident = self.input.ident;
        let module = &self.module;
        let name = &self.name;
        let (impl_g, ty_g, where_c) = self.generics(quote!(#krate::Construct), true);
        let global = quote!(::std::format!("{}.{}", #module, #name));
        let path = match &self.input.body {
            Body::Enum(_) if self.input.attrs.python_enum.is_none() => quote!(),
            _ => quote! {
                fn __path() -> ::core::option::Option<(&'static str, &'static str)> {
                    ::core::option::Option::Some((#module, #name))
                }
            },
        };
        let methods = match &self.input.body {
            Body::Struct(shape) if self.input.attrs.state.is_some() => {
                let graph = self.construct_state(shape);
                let stream = self.construct_stream_state(shape);
                quote!(#graph #stream)
            }
            Body::Struct(shape) => {
                let make = self.construct_args(shape, quote!(Self), global);
                let stream = self.construct_stream(shape);
                quote! {
                    fn construct(__node: #krate::Node<'_>) -> #krate::Result<Self> {
                        let __call = __node.reduction(#module, #name)?;
                        let __args = __call.args();
                        #make
                    }
                    #stream
                }
            }
            Body::Enum(variants) if self.input.attrs.python_enum.is_some() => {
                let arms = variants.iter().enumerate().map(|(i, v)| {
                    let vid = v.ident;
                    let value = self.enum_value(v, i);
                    quote!(if __value == #krate::Value::from(#value) { return ::core::result::Result::Ok(Self::#vid); })
                });
                let stream = self.construct_stream_python_enum(variants);
                quote! {
                    #stream
                    fn construct(__node: #krate::Node<'_>) -> #krate::Result<Self> {
                        let __call = __node.reduction(#module, #name)?;
                        let (__value,): (#krate::Value,) = __call.args().construct()?;
                        #(#arms)*
                        ::core::result::Result::Err(__node.error_msg(::std::format!(
                            "{:?} is not a value of {}.{}", __value, #module, #name
                        )))
                    }
                }
            }
            Body::Enum(variants) => {
                let arms = variants.iter().map(|v| {
                    let vid = v.ident;
                    let vname = self.variant_name(v);
                    let make = self.construct_args(
                        &v.shape,
                        quote!(Self::#vid),
                        quote!(::std::format!("{}.{}", #module, #vname)),
                    );
                    quote!(#vname => { let __args = __call.args(); #make })
                });
                let names: Vec<String> = variants.iter().map(|v| self.variant_name(v)).collect();
                let expected = names.join(", ");
                let stream = self.construct_stream_variants(variants);
                quote! {
                    #stream
                    fn construct(__node: #krate::Node<'_>) -> #krate::Result<Self> {
                        let __call = __node.any_reduction()?;
                        let __global = __call.global();
                        if __global.module != #module {
                            return ::core::result::Result::Err(__node.error_msg(::std::format!(
                                "expected a variant of {}.{} ({}), found {}", #module, #name, #expected, __global
                            )));
                        }
                        match __global.name.as_str() {
                            #(#arms)*
                            _ => ::core::result::Result::Err(__node.error_msg(::std::format!(
                                "expected a variant of {}.{} ({}), found {}", #module, #name, #expected, __global
                            ))),
                        }
                    }
                }
            }
        };
        quote! {
            #[automatically_derived]
            impl #impl_g #krate::Construct for #ident #ty_g #where_c {
                #path
                #methods
            }
        }
    }

    /// Reads written field `f` from the stream, one level deeper. A field
    /// read with `with` or `registry` is read as a `Value` and given, as a
    /// graph of its own, to its Graph-path reader (`__private::graph_field`);
    /// a `serde` field is deserialized from its `Value`.
    fn stream_read(&self, f: &Field<'_>) -> TokenStream {
        let krate = &self.krate;
        let ty = f.ty;
        if let Some(with) = &f.attrs.with {
            let path = &with.value;
            quote_spanned!(f.span=> __s.read(|__s: &mut #krate::__private::Stream<'_>| #krate::__private::graph_field(__s, #path::construct))?)
        } else if f.attrs.registry.is_some() {
            quote_spanned!(f.span=> __s.read(|__s: &mut #krate::__private::Stream<'_>| #krate::__private::graph_field(__s, |__n: #krate::Node<'_>| __n.registered::<#ty>()))?)
        } else if f.attrs.serde.is_some() {
            quote_spanned!(f.span=> __s.read(#krate::serde::field::construct_stream)?)
        } else if f.attrs.bytes.is_some() {
            quote_spanned!(f.span=> __s.read(#krate::__private::bytes_stream)?)
        } else {
            quote!(#krate::__private::read_item::<#ty>(__s)?)
        }
    }

    /// `constructor { fields }` read from an argument tuple on the stream,
    /// one `read` per written field.
    fn stream_args(&self, shape: &Shape<'_>, constructor: TokenStream) -> TokenStream {
        let n = shape.fields.iter().filter(|f| !f.skipped()).count();
        let inits = shape.fields.iter().map(|f| {
            let value = if f.skipped() {
                self.skipped_value(f)
            } else {
                self.stream_read(f)
            };
            match &f.member {
                syn::Member::Named(id) => quote!(#id: #value),
                syn::Member::Unnamed(_) => value,
            }
        });
        let body = match shape.style {
            Style::Named => quote!(#constructor { #(#inits),* }),
            Style::Tuple => quote!(#constructor ( #(#inits),* )),
            Style::Unit => quote!(#constructor),
        };
        quote!(__s.tuple(#n, |__s| ::core::result::Result::Ok(#body)))
    }

    /// `construct_stream` for `module.Name(*fields)`: the global, the
    /// argument tuple read field by field, `REDUCE`.
    fn construct_stream(&self, shape: &Shape<'_>) -> TokenStream {
        let krate = &self.krate;
        let module = &self.module;
        let name = &self.name;
        let n = shape.fields.iter().filter(|f| !f.skipped()).count();
        let inits = shape.fields.iter().map(|f| {
            let value = if f.skipped() {
                self.skipped_value(f)
            } else {
                self.stream_read(f)
            };
            match &f.member {
                syn::Member::Named(id) => quote!(#id: #value),
                syn::Member::Unnamed(_) => value,
            }
        });
        let body = match shape.style {
            Style::Named => quote!(Self { #(#inits),* }),
            Style::Tuple => quote!(Self ( #(#inits),* )),
            Style::Unit => quote!(Self),
        };
        quote! {
            fn construct_stream(
                __s: &mut #krate::__private::Stream<'_>,
            ) -> #krate::__private::Pulled<Self> {
                __s.reduce(#module, #name, #n, |__s| ::core::result::Result::Ok(#body))
            }
        }
    }

    /// `construct_stream` for a `state` struct: the instance as CPython
    /// writes one, each attribute of its state read into its field as it
    /// comes (a later one with the same name replacing it, as the Graph
    /// path reads the last), unknown ones skipped, or kept in order by a
    /// `rest` field. A missing field without a default and an unknown
    /// attribute under `deny_unknown_fields` are misses: the Graph path
    /// says what is wrong.
    fn construct_stream_state(&self, shape: &Shape<'_>) -> TokenStream {
        let krate = &self.krate;
        let module = &self.module;
        let name = &self.name;
        let read: Vec<&Field<'_>> = shape
            .fields
            .iter()
            .filter(|f| !f.skipped() && !f.is_rest())
            .collect();
        // A `rest` field keeps the attributes no field is named for, in
        // order, as `Rest::read_attribute_stream` reads them.
        let rest = shape.fields.iter().find(|f| f.is_rest());
        let rest_decl = rest.map(|f| {
            let ty = f.ty;
            quote!(let mut __rest: #ty = ::core::default::Default::default();)
        });
        let rest_reset = rest.map(|_| quote!(__rest = ::core::default::Default::default();));
        let slot = |i: usize| format_ident!("__v{}", i);
        let slots: Vec<Ident> = (0..read.len()).map(slot).collect();
        let decls = read.iter().zip(&slots).map(|(f, v)| {
            let ty = f.ty;
            quote!(let mut #v: ::core::option::Option<#ty> = ::core::option::Option::None;)
        });
        let unknown = if let Some(f) = rest {
            let ty = f.ty;
            quote!({
                <#ty as #krate::Rest>::read_attribute_stream(&mut __rest, __s)?;
                return ::core::result::Result::Ok(true);
            })
        } else if self.input.attrs.deny_unknown_fields.is_some() {
            quote!(return ::core::result::Result::Err(#krate::__private::Miss))
        } else {
            quote!(return ::core::result::Result::Ok(false))
        };
        let keys: Vec<syn::LitByteStr> = read
            .iter()
            .map(|f| syn::LitByteStr::new(f.name().as_bytes(), f.span))
            .collect();
        let indexes = 0..read.len();
        let find = quote!(match __key { #(#keys => #indexes,)* _ => #unknown });
        let arms = read.iter().zip(&slots).enumerate().map(|(i, (f, v))| {
            let read = self.stream_read(f);
            quote!(#i => #v = ::core::option::Option::Some(#read),)
        });
        let build = if self.input.attrs.default.is_some() {
            // A field's own `default = "path"` before the container's.
            let assigns = read.iter().zip(&slots).map(|(f, v)| {
                let member = &f.member;
                match default_path(f) {
                    Some(path) => quote!(__made.#member = match #v {
                        ::core::option::Option::Some(__x) => __x,
                        ::core::option::Option::None => #path(),
                    };),
                    None => {
                        quote!(if let ::core::option::Option::Some(__x) = #v { __made.#member = __x; })
                    }
                }
            });
            let skipped = shape.fields.iter().filter(|f| f.skipped()).filter_map(|f| {
                let member = &f.member;
                default_path(f).map(|path| quote!(__made.#member = #path();))
            });
            let rest_assign = rest.map(|f| {
                let member = &f.member;
                quote!(__made.#member = __rest;)
            });
            quote! {
                let mut __made: Self = ::core::default::Default::default();
                #(#skipped)*
                #(#assigns)*
                #rest_assign
                ::core::result::Result::Ok(__made)
            }
        } else {
            let mut k = 0usize;
            let inits = shape.fields.iter().map(|f| {
                let member = &f.member;
                let value = if f.skipped() {
                    self.skipped_value(f)
                } else if f.is_rest() {
                    quote!(__rest)
                } else {
                    let v = slot(k);
                    k += 1;
                    let missing = match &f.attrs.default {
                        Some(_) => self.skipped_value(f),
                        None => quote!(return ::core::result::Result::Err(#krate::__private::Miss)),
                    };
                    quote!(match #v {
                        ::core::option::Option::Some(__x) => __x,
                        ::core::option::Option::None => #missing,
                    })
                };
                quote!(#member: #value)
            });
            quote!(::core::result::Result::Ok(Self { #(#inits),* }))
        };
        quote! {
            fn construct_stream(
                __s: &mut #krate::__private::Stream<'_>,
            ) -> #krate::__private::Pulled<Self> {
                #(#decls)*
                #rest_decl
                const __KEYS: &[&[u8]] = &[#(#keys),*];
                // Attributes usually come in one order (the instance's
                // __dict__, as the class's __init__ set them): the one
                // after the last is tried first.
                let mut __next = 0usize;
                let __had = __s.instance(#module, #name, |__s, __key: &[u8]| {
                    let __i = if __KEYS.get(__next) == ::core::option::Option::Some(&__key) {
                        __next
                    } else {
                        #find
                    };
                    __next = __i + 1;
                    match __i {
                        #(#arms)*
                        _ => return ::core::result::Result::Err(#krate::__private::Miss),
                    }
                    ::core::result::Result::Ok(true)
                })?;
                if !__had {
                    // Read on trial, not the object's state: forgotten.
                    #(#slots = ::core::option::Option::None;)*
                    #rest_reset
                }
                #build
            }
        }
    }

    /// `construct_stream` for a `python_enum`: `module.Name(value)`, the
    /// value compared as the Graph path compares it.
    fn construct_stream_python_enum(&self, variants: &[Variant<'_>]) -> TokenStream {
        let krate = &self.krate;
        let module = &self.module;
        let name = &self.name;
        let arms = variants.iter().enumerate().map(|(i, v)| {
            let vid = v.ident;
            let value = self.enum_value(v, i);
            quote!(if __value == #krate::Value::from(#value) { return ::core::result::Result::Ok(Self::#vid); })
        });
        quote! {
            fn construct_stream(
                __s: &mut #krate::__private::Stream<'_>,
            ) -> #krate::__private::Pulled<Self> {
                let __value = __s.reduce(#module, #name, 1, |__s| __s.read(#krate::__private::Stream::int_or_str))?;
                #(#arms)*
                ::core::result::Result::Err(#krate::__private::Miss)
            }
        }
    }

    /// `construct_stream` for an enum of variants named as globals: the
    /// global says which, then its argument tuple.
    fn construct_stream_variants(&self, variants: &[Variant<'_>]) -> TokenStream {
        let krate = &self.krate;
        let module = &self.module;
        let names: Vec<String> = variants.iter().map(|v| self.variant_name(v)).collect();
        let arms = variants.iter().enumerate().map(|(i, v)| {
            let vid = v.ident;
            let read = self.stream_args(&v.shape, quote!(Self::#vid));
            quote!(#i => #read,)
        });
        quote! {
            fn construct_stream(
                __s: &mut #krate::__private::Stream<'_>,
            ) -> #krate::__private::Pulled<Self> {
                __s.reduce_any(#module, &[#(#names),*], |__s, __i| match __i {
                    #(#arms)*
                    _ => ::core::result::Result::Err(#krate::__private::Miss),
                })
            }
        }
    }

    fn construct_state(&self, shape: &Shape<'_>) -> TokenStream {
        let krate = &self.krate;
        let module = &self.module;
        let name = &self.name;
        let stn = format_ident!("__stn");
        let known: Vec<String> = shape
            .fields
            .iter()
            .filter(|f| !f.skipped() && !f.is_rest())
            .map(|f| f.name())
            .collect();
        let deny = self
            .input
            .attrs
            .deny_unknown_fields
            .map(|_| quote!(__st.deny_unknown(&[#(#known),*])?;));
        // Reads field `f` as `Option<T>`: `None` when the state lacks it.
        let read = |f: &Field<'_>| {
            let key = f.name();
            let rust = f.rust_name();
            let read = self.field_read(f, &stn, quote!(__v));
            quote!(__st.field(#key, #rust, |#stn: #krate::Node<'_>, __v: &#krate::Value| ::core::result::Result::Ok(#read))?)
        };
        let read_rest = |f: &Field<'_>| {
            let rust = f.rust_name();
            let ty = f.ty;
            let keep = quote_spanned!(ty.span()=> __st.rest(&[#(#known),*], #rust, &mut __r, <#ty as #krate::Rest>::read_attribute));
            quote!({
                let mut __r: #ty = ::core::default::Default::default();
                #keep?;
                __r
            })
        };
        let read_state = |body: TokenStream| {
            quote! {
                let __call = __node.reduction(__module, #name)?;
                #krate::__private::InstanceState::read(
                    &__call,
                    __module,
                    #name,
                    ::core::any::type_name::<Self>(),
                    |__st: &#krate::__private::InstanceState<'_>| {
                        #deny
                        #body
                    },
                )
            }
        };
        if self.input.attrs.default.is_some() {
            // Made first from Default, then filled: cycles through
            // Rc<RefCell<Self>> work, and missing fields keep their default.
            // A field's own `default = "path"` before the container's.
            let assigns = shape.fields.iter().map(|f| {
                let member = &f.member;
                if f.skipped() {
                    match default_path(f) {
                        Some(path) => quote!(self.#member = #path();),
                        None => quote!(),
                    }
                } else if f.is_rest() {
                    let r = read_rest(f);
                    quote!(self.#member = #r;)
                } else {
                    let r = read(f);
                    match default_path(f) {
                        Some(path) => quote!(self.#member = match #r {
                            ::core::option::Option::Some(__x) => __x,
                            ::core::option::Option::None => #path(),
                        };),
                        None => {
                            quote!(if let ::core::option::Option::Some(__x) = #r { self.#member = __x; })
                        }
                    }
                }
            });
            let fill = read_state(quote! {
                #(#assigns)*
                ::core::result::Result::Ok(())
            });
            return quote! {
                fn construct(__node: #krate::Node<'_>) -> #krate::Result<Self> {
                    let mut __made = match <Self as #krate::Construct>::construct_shell(__node) {
                        ::core::option::Option::Some(__r) => __r?,
                        ::core::option::Option::None => ::core::default::Default::default(),
                    };
                    #krate::Construct::fill_shell(&mut __made, __node)?;
                    ::core::result::Result::Ok(__made)
                }
                fn construct_shell(__node: #krate::Node<'_>) -> ::core::option::Option<#krate::Result<Self>> {
                    ::core::option::Option::Some(__node.reduction(#module, #name).map(|_| ::core::default::Default::default()))
                }
                fn fill_shell(&mut self, __node: #krate::Node<'_>) -> #krate::Result<()> {
                    let __module = #module;
                    #fill
                }
            };
        }
        let inits = shape.fields.iter().map(|f| {
            let member = &f.member;
            let value = if f.skipped() {
                self.skipped_value(f)
            } else if f.is_rest() {
                read_rest(f)
            } else {
                let key = f.name();
                let rust = f.rust_name();
                let missing = match &f.attrs.default {
                    Some(_) => self.skipped_value(f),
                    None => quote!(return ::core::result::Result::Err(__st.missing(#key, #rust))),
                };
                let r = read(f);
                quote!(match #r {
                    ::core::option::Option::Some(__x) => __x,
                    ::core::option::Option::None => #missing,
                })
            };
            quote!(#member: #value)
        });
        let build = read_state(quote!(::core::result::Result::Ok(Self { #(#inits),* })));
        quote! {
            fn construct(__node: #krate::Node<'_>) -> #krate::Result<Self> {
                let __module = #module;
                #build
            }
        }
    }

    fn registration(&self) -> TokenStream {
        let krate = &self.krate;
        let ident = self.input.ident;
        let module = &self.module;
        let name = &self.name;
        if self.is_generic() {
            return quote! {
                #krate::__private::inventory::submit! {
                    #krate::__private::GenericName {
                        path: || ::std::format!("{}.{}", #module, #name),
                    }
                }
            };
        }
        let paths: Vec<String> = match &self.input.body {
            Body::Enum(vs) if self.input.attrs.python_enum.is_none() => {
                vs.iter().map(|v| self.variant_name(v)).collect()
            }
            _ => vec![name.clone()],
        };
        quote! {
            #krate::__private::inventory::submit! {
                #krate::__private::Registration {
                    type_name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                    register: |__r: &mut #krate::Registry| -> #krate::Result<()> {
                        __r.register_reducer::<#ident>(|__v: &#ident, __s: &mut #krate::Saver<'_, '_>| #krate::Reduce::reduce(__v, __s))?;
                        #( __r.register_constructor(#module, #paths, <#ident as #krate::Construct>::construct)?; )*
                        ::core::result::Result::Ok(())
                    },
                }
            }
        }
    }
}

/// The name a variant's field is bound to in a `match`.
fn binding(f: &Field<'_>) -> Ident {
    match &f.member {
        syn::Member::Named(id) => format_ident!("__f_{}", id),
        syn::Member::Unnamed(i) => format_ident!("__f{}", i.index),
    }
}

/// A field's `default = "path"`, if it names one.
fn default_path<'f>(f: &'f Field<'_>) -> Option<&'f syn::Path> {
    f.attrs.default.as_ref().and_then(|d| d.value.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lifetime_is_matched_whole() {
        let a: syn::Lifetime = parse_quote!('a);
        let s: syn::Lifetime = parse_quote!('s);
        let ty: Type = parse_quote!(&'ab str);
        assert!(!mentions_lifetime(&ty, &a));
        let ty: Type = parse_quote!(Vec<(&'static str, u8)>);
        assert!(!mentions_lifetime(&ty, &s));
        let ty: Type = parse_quote!(Vec<(u8, Cow<'a, str>)>);
        assert!(mentions_lifetime(&ty, &a));
    }
}
