//! Merkle trees as in RFC 6962 / RFC 9162 (Certificate Transparency), over SHA-256: what lets one
//! TEE report and one TPM quote answer many sessions at once (the attester's batches).
//!
//! - leaf hash = SHA-256(`0x00` ‖ leaf data), node hash = SHA-256(`0x01` ‖ left ‖ right): the
//!   prefixes keep a leaf from ever being taken for an inner node (second-preimage attacks);
//! - the tree over `n` leaves splits at `k`, the largest power of two below `n`: the left subtree
//!   holds the first `k` leaves (RFC 9162, section 2.1.1), so every size has one shape;
//! - an inclusion proof is the list of sibling hashes from the leaf up to the root
//!   (section 2.1.3); [`root_from_path`] follows section 2.1.3.2 and fails on a wrong index or a
//!   path of the wrong length before it hashes anything.
//!
//! What goes into a leaf, and where the root and the tree size are signed, is the binding
//! module's business (`batch_leaf`, `BatchClaims`); the layout is in `docs/wire-format.md`.

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// The largest tree accepted or built (2^16 leaves: paths of at most 16 hashes).
pub const MAX_TREE_SIZE: u64 = 1 << 16;

/// The leaf hash: SHA-256(`0x00` ‖ `data`).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    finish(ctx)
}

/// An inner node: SHA-256(`0x01` ‖ `left` ‖ `right`).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

fn finish(ctx: ring::digest::Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// A tree built over leaf hashes: its root and the inclusion proof of every leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    root: Hash,
    paths: Vec<Vec<Hash>>,
}

impl Tree {
    /// The tree over `leaves` (already leaf-hashed); `None` for no leaves or more than
    /// [`MAX_TREE_SIZE`]. Costs `n - 1` node hashes for all `n` proofs together.
    pub fn new(leaves: &[Hash]) -> Option<Self> {
        if leaves.is_empty() || leaves.len() as u64 > MAX_TREE_SIZE {
            return None;
        }
        let mut paths = vec![Vec::new(); leaves.len()];
        let root = build(leaves, &mut paths);
        Some(Self { root, paths })
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.paths.len() as u64
    }

    /// The inclusion proof of leaf `index` (sibling hashes, leaf level first).
    pub fn path(&self, index: usize) -> Option<&[Hash]> {
        self.paths.get(index).map(Vec::as_slice)
    }
}

/// Root of `leaves`, appending each leaf's sibling at this level to its path (deeper levels first,
/// since the recursion finishes them before returning).
fn build(leaves: &[Hash], paths: &mut [Vec<Hash>]) -> Hash {
    match leaves {
        [] => [0u8; 32], // not reached: Tree::new refuses empty input and `split` never gives 0
        [leaf] => *leaf,
        _ => {
            let k = split(leaves.len());
            let (left_leaves, right_leaves) = leaves.split_at(k);
            let (left_paths, right_paths) = paths.split_at_mut(k);
            let left = build(left_leaves, left_paths);
            let right = build(right_leaves, right_paths);
            for p in left_paths.iter_mut() {
                p.push(right);
            }
            for p in right_paths.iter_mut() {
                p.push(left);
            }
            node_hash(&left, &right)
        }
    }
}

/// Why an inclusion proof has the wrong shape for its tree (checked before any hashing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("tree size {size} is outside 1..={MAX_TREE_SIZE}")]
    TreeSize { size: u64 },
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    Index { index: u64, size: u64 },
    #[error(
        "a path of {presented} hashes for leaf {index} of a {size}-leaf tree, which needs {expected}"
    )]
    PathLength {
        index: u64,
        size: u64,
        expected: usize,
        presented: usize,
    },
}

/// How many hashes the inclusion proof of leaf `index` in a tree of `size` leaves has.
pub fn path_len(index: u64, size: u64) -> Result<usize, ProofError> {
    if size == 0 || size > MAX_TREE_SIZE {
        return Err(ProofError::TreeSize { size });
    }
    if index >= size {
        return Err(ProofError::Index { index, size });
    }
    // RFC 9162 2.1.3.2 without the hashing: count the steps until sn reaches 0.
    let (mut fnode, mut snode) = (index, size - 1);
    let mut len = 0;
    while snode != 0 {
        if fnode & 1 == 1 || fnode == snode {
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        }
        fnode >>= 1;
        snode >>= 1;
        len += 1;
    }
    Ok(len)
}

/// The root that `path` leads to from `leaf` at `index` in a tree of `size` leaves
/// (RFC 9162, section 2.1.3.2), or why the proof cannot belong to such a tree.
pub fn root_from_path(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
) -> Result<Hash, ProofError> {
    let expected = path_len(index, size)?;
    if path.len() != expected {
        return Err(ProofError::PathLength {
            index,
            size,
            expected,
            presented: path.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    /// MTH as RFC 9162 defines it, recursively, as the reference.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves {
            [] => sha256(b""),
            [leaf] => *leaf,
            _ => {
                let k = split(leaves.len());
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_size_and_index_round_trips() {
        for n in 1..=70 {
            let l = leaves(n);
            let tree = Tree::new(&l).unwrap();
            assert_eq!(tree.root(), &mth(&l), "size {n}");
            for (i, leaf) in l.iter().enumerate() {
                let path = tree.path(i).unwrap();
                assert_eq!(path_len(i as u64, n as u64).unwrap(), path.len());
                assert_eq!(
                    root_from_path(leaf, i as u64, n as u64, path).unwrap(),
                    *tree.root(),
                    "leaf {i} of {n}"
                );
            }
        }
    }

    #[test]
    fn rfc9162_shapes() {
        // A tree of one: the root is the leaf hash, the path empty.
        let l = leaves(1);
        assert_eq!(*Tree::new(&l).unwrap().root(), l[0]);
        assert_eq!(path_len(0, 1), Ok(0));
        // Seven leaves (RFC 9162's example tree): leaf 6 has a path of 2, leaf 0 of 3.
        assert_eq!(path_len(6, 7), Ok(2));
        assert_eq!(path_len(0, 7), Ok(3));
        // Prefixes: a leaf over the bytes of two hashes is not their node.
        let (a, b) = (leaves(2)[0], leaves(2)[1]);
        let mut both = a.to_vec();
        both.extend_from_slice(&b);
        assert_ne!(leaf_hash(&both), node_hash(&a, &b));
    }

    #[test]
    fn wrong_proofs_fail() {
        let l = leaves(13);
        let tree = Tree::new(&l).unwrap();
        let path = tree.path(5).unwrap().to_vec();
        // Another leaf, another index: another root.
        assert_ne!(root_from_path(&l[6], 5, 13, &path).unwrap(), *tree.root());
        assert_ne!(root_from_path(&l[5], 4, 13, &path).unwrap(), *tree.root());
        // The path alone does not fix the tree size (leaf 5 has the same path in trees of 12
        // and 13 leaves): that is why the size is signed beside the root (BatchClaims).
        assert_eq!(root_from_path(&l[5], 5, 12, &path).unwrap(), *tree.root());
        assert!(matches!(
            root_from_path(&l[5], 5, 6, &path),
            Err(ProofError::PathLength { .. })
        ));
        // Truncated or extended paths, indices outside the tree, empty and huge trees.
        assert!(matches!(
            root_from_path(&l[5], 5, 13, &path[..path.len() - 1]),
            Err(ProofError::PathLength { .. })
        ));
        let mut longer = path.clone();
        longer.push([0; 32]);
        assert!(matches!(
            root_from_path(&l[5], 5, 13, &longer),
            Err(ProofError::PathLength { .. })
        ));
        assert_eq!(
            root_from_path(&l[5], 13, 13, &path),
            Err(ProofError::Index {
                index: 13,
                size: 13
            })
        );
        assert_eq!(
            root_from_path(&l[5], 0, 0, &[]),
            Err(ProofError::TreeSize { size: 0 })
        );
        assert!(root_from_path(&l[5], 0, u64::MAX, &[]).is_err());
        assert!(Tree::new(&[]).is_none());
    }
}
