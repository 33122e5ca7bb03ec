//! Authentication: the one `authenticate` (spec steps 1–9 and 11, for the
//! proxy and the admin API, over a key source), who is trusted ([`clients`], the keys file, swapped at
//! reload), who is revoked (`revocation`), and the replay store that
//! accepts each proof once (`replay`).

pub(crate) mod authenticate;
pub mod clients;
pub(crate) mod replay;
pub(crate) mod revocation;
