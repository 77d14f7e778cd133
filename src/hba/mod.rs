//! pg_hba.conf: the managed block ([`render`], pure) and applying it to the
//! file safely (`apply`, to come with the reconciler).

pub mod render;
