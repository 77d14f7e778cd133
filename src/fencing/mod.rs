//! The fencing core: what keeps two nodes from both answering
//! `production`. Pure but for its two edges:
//!
//! - [`claims`]: claim records, raised only, with their text form;
//! - [`decide`]: the quorum and timeline rules, and the wait (what is left
//!   of any other node's lease, as the voters' clocks tell it);
//! - [`promote_check`]: may a standby be promoted now (a promoter's hook);
//! - [`timing`]: the lease L, HAProxy's term H, the drift factor and W;
//! - [`price`]: what a config's timing costs (a zombie, a lost primary, a
//!   blip), for `check-config` and `doctor`;
//! - [`verdict`]: the verdict the responder obeys, and its freshness;
//! - [`claims_store`] (an edge): the durable record file, under a lock;
//! - [`clock`] (an edge): CLOCK_BOOTTIME and the boot id.
//!
//! The model in `model/` checks these rules; each of its counterexamples
//! is a row of `decide`'s table test.

pub mod claims;
pub mod claims_store;
pub mod clock;
pub mod decide;
pub mod price;
pub mod promote_check;
pub mod timing;
pub mod verdict;
