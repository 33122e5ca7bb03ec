//! Policy (spec §5 step 10), checked only after both signatures verified so an
//! unauthenticated caller learns nothing about it.

use signet_core::{ErrorCode, Purpose, VerifiedProof};

use crate::refusal::Refusal;

/// Which verified proofs may use the proxy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed_purposes: Vec<Purpose>,
}

impl Policy {
    /// A policy allowing the given purposes; an empty list allows any.
    pub fn new(allowed_purposes: Vec<Purpose>) -> Self {
        Policy { allowed_purposes }
    }

    /// `PURPOSE_MISMATCH` when the proof's purpose is not allowed here.
    pub fn check(&self, proof: &VerifiedProof) -> Result<(), Refusal> {
        if self.allowed_purposes.is_empty() || self.allowed_purposes.contains(proof.purpose()) {
            Ok(())
        } else {
            Err(
                Refusal::new(ErrorCode::PurposeMismatch).with_detail(format!(
                    "purpose {:?} is not allowed",
                    proof.purpose().as_str()
                )),
            )
        }
    }
}
