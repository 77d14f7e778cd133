//! pg_hba.conf: the managed block ([`render`], pure) and putting it in
//! place safely ([`apply`]).

pub mod apply;
pub mod render;
