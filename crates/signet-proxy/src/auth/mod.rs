//! Authentication: who is trusted ([`clients`], the keys file, swapped at
//! reload), who is revoked (`revocation`), and the replay store that
//! accepts each proof once (`replay`).

pub mod clients;
pub(crate) mod replay;
pub(crate) mod revocation;
