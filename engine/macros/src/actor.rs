//! `#[shoal::actor]`: an impl block whose `new` builds an actor.
//!
//! Generates, beside the block (kept as written, less `#[shoal::method]`):
//! - `impl shoal::Actor for T`, naming `T`'s registered name and its
//!   methods struct;
//! - `T::remote(args…)` and `T::options()`, returning `TOptions` (the
//!   options builder, ending in `.remote(args…)`);
//! - `TMethods`, which an `ActorHandle<T>` dereferences to: one method per
//!   `pub` method with a `&self` or `&mut self` receiver, taking `IntoArg`s
//!   and returning `ObjectRef`s;
//! - a registry entry for the constructor and for each method, which a
//!   worker runs on the actor state its process keeps.

use proc_macro2::TokenStream as TokenStream2;
use quote::{ToTokens, format_ident, quote};
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, LitInt, Type, Visibility};

use crate::{arguments, check_signature, checks, local, returns, source_hash, streams};

/// What `#[shoal::method(…)]` says of a method.
struct MethodArgs {
    num_returns: usize,
    streaming: bool,
}

/// Take the `#[shoal::method(…)]` attribute off a method, if it has one.
fn take_method_args(method: &mut ImplItemFn) -> syn::Result<Option<MethodArgs>> {
    let Some(at) = method.attrs.iter().position(|a| {
        let path = a.path();
        path.is_ident("method")
            || (path.segments.len() == 2 && path.segments[0].ident == "shoal" && path.segments[1].ident == "method")
    }) else {
        return Ok(None);
    };
    let attr = method.attrs.remove(at);
    let mut args = MethodArgs { num_returns: 1, streaming: false };
    if matches!(attr.meta, syn::Meta::Path(_)) {
        return Ok(Some(args));
    }
    attr.parse_nested_meta(|meta| {
        if meta.path.is_ident("num_returns") {
            let lit: LitInt = meta.value()?.parse()?;
            args.num_returns = lit.base10_parse()?;
            if args.num_returns == 0 {
                return Err(syn::Error::new(lit.span(), "num_returns must be at least 1"));
            }
            Ok(())
        } else if meta.path.is_ident("streaming") {
            args.streaming = true;
            Ok(())
        } else {
            Err(meta.error("unknown option; expected `num_returns = N` or `streaming`"))
        }
    })?;
    if args.streaming && args.num_returns != 1 {
        return Err(syn::Error::new_spanned(attr, "a streaming method has no `num_returns`"));
    }
    Ok(Some(args))
}

/// The receiver of a remote method must be `&self` or `&mut self`.
fn check_receiver(method: &ImplItemFn) -> syn::Result<()> {
    if let Some(FnArg::Receiver(receiver)) = method.sig.inputs.first() {
        if receiver.reference.is_none() || receiver.colon_token.is_some() {
            return Err(syn::Error::new_spanned(
                receiver,
                "actor methods take `&self` or `&mut self`: the actor keeps its state between calls",
            ));
        }
    }
    Ok(())
}

/// `Self` in a signature's types, written as the actor's type: generated
/// code uses those types outside the impl block.
fn without_self(tokens: TokenStream2, ty: &Type) -> TokenStream2 {
    tokens
        .into_iter()
        .map(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) if ident == "Self" => quote!(#ty),
            proc_macro2::TokenTree::Group(group) => {
                let mut replaced = proc_macro2::Group::new(group.delimiter(), without_self(group.stream(), ty));
                replaced.set_span(group.span());
                proc_macro2::TokenTree::Group(replaced).into()
            }
            other => other.into(),
        })
        .collect()
}

pub(crate) fn expand(mut block: ItemImpl) -> syn::Result<TokenStream2> {
    if !block.generics.params.is_empty() || block.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(&block.generics, "actor types cannot be generic"));
    }
    if let Some((_, path, _)) = &block.trait_ {
        return Err(syn::Error::new_spanned(path, "#[shoal::actor] goes on the type's own impl block, not a trait's"));
    }
    let ty = (*block.self_ty).clone();
    let Type::Path(path) = &ty else {
        return Err(syn::Error::new_spanned(&ty, "#[shoal::actor] goes on the impl block of a named type"));
    };
    let ident = path.path.segments.last().expect("a path has a segment").ident.clone();
    let class_name = ident.to_string();
    let methods_ident = format_ident!("{}Methods", ident);
    let options_ident = format_ident!("{}Options", ident);
    let shoal = quote!(::shoal);
    let private = quote!(#shoal::__private);
    let (args, ret, refs, state, raw, sink) =
        (local("args"), local("ret"), local("refs"), local("state"), local("raw"), local("sink"));

    let mut constructor = None;
    let mut methods = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        let marked = take_method_args(method)?;
        let has_receiver = matches!(method.sig.inputs.first(), Some(FnArg::Receiver(_)));
        if method.sig.ident == "new" && !has_receiver {
            constructor = Some(method.clone());
            continue;
        }
        let public = !matches!(method.vis, Visibility::Inherited);
        if has_receiver && (public || marked.is_some()) {
            check_receiver(method)?;
        }
        if !has_receiver || !public {
            if marked.is_some() {
                return Err(syn::Error::new_spanned(
                    &method.sig,
                    "#[shoal::method] marks a `pub` method taking `&self` or `&mut self`",
                ));
            }
            continue;
        }
        // Its signature as generated code sees it, outside the impl block.
        let mut seen = method.clone();
        seen.sig = syn::parse2(without_self(seen.sig.to_token_stream(), &ty))?;
        methods.push((seen, marked.unwrap_or(MethodArgs { num_returns: 1, streaming: false })));
    }
    let Some(constructor) = constructor else {
        return Err(syn::Error::new_spanned(&block.self_ty, "an actor needs a constructor: `pub fn new(…) -> Self`"));
    };
    check_signature(&constructor.sig, "actor constructors")?;
    let hash = source_hash(&quote!(#block));

    let (new_names, new_types) = arguments(constructor.sig.inputs.iter(), "actor constructor")?;
    let (new_checks_fn, new_checks) =
        checks(&format_ident!("__checks_new"), quote!(#options_ident::__checks_new), &new_types);
    let new_vis = &constructor.vis;
    let doc_remote =
        format!("Create a `{class_name}` actor: returns its handle at once, while its process starts and runs `new`.");
    let doc_options = format!("Options for creating a `{class_name}` actor (generated by `#[shoal::actor]`).");
    let doc_methods = format!(
        "The remote methods of [`{class_name}`], called through an `ActorHandle<{class_name}>` (generated by `#[shoal::actor]`): each returns at once with refs to its results."
    );

    let mut registrations = Vec::new();
    let mut calls = Vec::new();
    for (i, (method, marked)) in methods.iter().enumerate() {
        let sig = &method.sig;
        check_signature(sig, "actor methods")?;
        let name = &sig.ident;
        let vis = &method.vis;
        let (arg_names, arg_types) = arguments(sig.inputs.iter().skip(1), "actor method")?;
        let checks_name = format_ident!("__checks_{}", name);
        let (checks_fn, arg_checks) = checks(&checks_name, quote!(#methods_ident::#checks_name), &arg_types);
        let n = marked.num_returns;
        let num_returns = proc_macro2::Literal::usize_unsuffixed(n);
        let method_name = name.to_string();
        let full_name = quote!(::core::concat!(::core::module_path!(), "::", #class_name, "::", #method_name));
        let registration = format_ident!("__SHOAL_METHOD_{}", i);
        let invoke = format_ident!("__shoal_method_{}", i);
        let doc = format!("Call `{name}` on the actor: runs in its process after the calls made before it.");
        let read_args = quote! {
            #( let #arg_names: #arg_types = #args.read_checked(#arg_checks)?; )*
            let #state = #private::actor_state::<#ty>(#state)?;
            let #ret = <#ty>::#name(#state, #(#arg_names),*);
        };
        let (ref_type, returns_expr, entry) = if marked.streaming {
            let (ref_type, returns_expr, feed) = streams(&sig.output)?;
            let entry = quote! {
                static #registration: #private::RemoteFunction = #private::RemoteFunction {
                    name: #full_name,
                    source_hash: #hash,
                    invoke: #private::Invoke::StreamMethod { class: <#ty as #shoal::Actor>::CLASS, call: #invoke },
                };

                fn #invoke(
                    #state: &mut (dyn ::core::any::Any + ::core::marker::Send),
                    #args: &mut #private::ArgReader<'_>,
                    #sink: &mut #private::Sink<'_>,
                ) -> ::core::result::Result<(), #shoal::Error> {
                    #read_args
                    #feed
                    ::core::result::Result::Ok(())
                }
            };
            (ref_type, returns_expr, entry)
        } else {
            let (ref_type, returns_expr, outputs_expr) = returns(&sig.output, n)?;
            let entry = quote! {
                static #registration: #private::RemoteFunction = #private::RemoteFunction {
                    name: #full_name,
                    source_hash: #hash,
                    invoke: #private::Invoke::Method { class: <#ty as #shoal::Actor>::CLASS, call: #invoke },
                };

                fn #invoke(
                    #state: &mut (dyn ::core::any::Any + ::core::marker::Send),
                    #args: &mut #private::ArgReader<'_>,
                ) -> ::core::result::Result<::std::vec::Vec<#private::Output>, #shoal::Error> {
                    #read_args
                    ::core::result::Result::Ok(#outputs_expr)
                }
            };
            (ref_type, returns_expr, entry)
        };
        registrations.push(quote! {
            #[#private::linkme::distributed_slice(#private::REMOTE_FUNCTIONS)]
            #[linkme(crate = #private::linkme)]
            #entry
        });
        calls.push(quote! {
            #checks_fn

            #[doc = #doc]
            #vis fn #name(&self, #(#arg_names: impl #shoal::IntoArg<#arg_types>),*) -> #ref_type {
                let #args = ::std::vec![#(#shoal::IntoArg::<#arg_types>::into_arg(#arg_names, #arg_checks)),*];
                #[allow(unused_mut)]
                let mut #refs = #private::call(&self.0, #full_name, #args, #num_returns);
                #returns_expr
            }
        });
    }

    Ok(quote! {
        #block

        impl #shoal::Actor for #ty {
            const CLASS: &'static str = ::core::concat!(::core::module_path!(), "::", #class_name);
            type Methods = #methods_ident;
        }

        #[doc = #doc_methods]
        #[derive(Clone)]
        pub struct #methods_ident(#private::RawActor);

        impl #private::ActorMethods for #methods_ident {
            fn from_raw(raw: #private::RawActor) -> Self {
                #methods_ident(raw)
            }
            fn raw(&self) -> &#private::RawActor {
                &self.0
            }
        }

        #[allow(clippy::all)]
        impl #methods_ident {
            #(#calls)*
        }

        #[doc = #doc_options]
        #[derive(Debug, Clone)]
        pub struct #options_ident(#shoal::ActorOptions);

        #[allow(clippy::all)]
        impl #options_ident {
            #new_checks_fn

            /// CPUs the actor holds while it lives (default 0).
            pub fn num_cpus(self, cpus: u32) -> Self {
                #options_ident(self.0.num_cpus(cpus))
            }

            /// Register the actor under `name` (see `shoal::get_actor`).
            pub fn name(self, name: impl ::core::convert::Into<::std::string::String>) -> Self {
                #options_ident(self.0.name(name))
            }

            /// Times its process is started again when it dies (default 0).
            pub fn max_restarts(self, restarts: u32) -> Self {
                #options_ident(self.0.max_restarts(restarts))
            }

            /// Times a call running when its process died runs again (default 0).
            pub fn max_task_retries(self, retries: u32) -> Self {
                #options_ident(self.0.max_task_retries(retries))
            }

            #[doc = #doc_remote]
            pub fn remote(self, #(#new_names: impl #shoal::IntoArg<#new_types>),*) -> #shoal::ActorHandle<#ty> {
                #private::start_on_first_use(<#ty as #shoal::Actor>::CLASS);
                let #args = ::std::vec![#(#shoal::IntoArg::<#new_types>::into_arg(#new_names, #new_checks)),*];
                let #raw = #private::create_actor(<#ty as #shoal::Actor>::CLASS, &self.0, #args);
                #shoal::ActorHandle::from_raw(#raw)
            }
        }

        #[allow(clippy::all)]
        impl #ty {
            #[doc = #doc_remote]
            #new_vis fn remote(#(#new_names: impl #shoal::IntoArg<#new_types>),*) -> #shoal::ActorHandle<#ty> {
                Self::options().remote(#(#new_names),*)
            }

            /// Options (`num_cpus`, `name`, `max_restarts`, `max_task_retries`), then `.remote(args…)`.
            #new_vis fn options() -> #options_ident {
                #options_ident(#shoal::ActorOptions::default())
            }
        }

        const _: () = {
            #[#private::linkme::distributed_slice(#private::REMOTE_FUNCTIONS)]
            #[linkme(crate = #private::linkme)]
            static __SHOAL_CONSTRUCTOR: #private::RemoteFunction = #private::RemoteFunction {
                name: ::core::concat!(::core::module_path!(), "::", #class_name, "::new"),
                source_hash: #hash,
                invoke: #private::Invoke::Constructor { class: <#ty as #shoal::Actor>::CLASS, new: __shoal_new },
            };

            fn __shoal_new(
                #args: &mut #private::ArgReader<'_>,
            ) -> ::core::result::Result<::std::boxed::Box<dyn ::core::any::Any + ::core::marker::Send>, #shoal::Error> {
                #( let #new_names: #new_types = #args.read_checked(#new_checks)?; )*
                let #state: #ty = <#ty>::new(#(#new_names),*);
                ::core::result::Result::Ok(::std::boxed::Box::new(#state))
            }

            #(#registrations)*
        };
    })
}
