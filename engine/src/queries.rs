//! Row-major query batches that carry their own dimension.
//!
//! A flat `&[f32]` cannot say how it is cut into rows: three 128-d queries
//! and one 384-d query are both 384 floats. Batch searches therefore take a
//! [`Queries`], which knows the caller's dimension, and refuse it with
//! [`Error::DimensionMismatch`] naming both dimensions when it is not the
//! index's.

use crate::dataset::Vectors;
use crate::error::{Error, Result};

/// A borrowed batch of row-major queries of one dimension.
///
/// ```
/// use strata::Queries;
/// let flat = [0.0f32; 3 * 128];
/// let q = Queries::new(&flat, 128)?;
/// assert_eq!((q.len(), q.dim()), (3, 128));
/// assert!(Queries::new(&flat[..100], 128).is_err()); // not whole rows
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Queries<'a> {
    data: &'a [f32],
    dim: usize,
}

impl<'a> Queries<'a> {
    /// `data` cut into rows of `dim` components. Errors: `dim = 0`
    /// ([`Error::InvalidParameter`]), or a length that is not a whole
    /// number of rows ([`Error::DimensionMismatch`] naming the partial row).
    pub fn new(data: &'a [f32], dim: usize) -> Result<Queries<'a>> {
        if dim == 0 {
            return Err(Error::InvalidParameter {
                name: "dim",
                reason: "queries must have at least one component".into(),
            });
        }
        if !data.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                expected: dim,
                found: data.len() % dim,
                row: Some(data.len() / dim),
            });
        }
        Ok(Queries { data, dim })
    }

    /// Components per query.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether there are no queries.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// All components, row after row.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Checks these queries against an index of dimension `index_dim`.
    pub(crate) fn check(&self, index_dim: usize) -> Result<()> {
        if self.dim != index_dim {
            return Err(Error::DimensionMismatch {
                expected: index_dim,
                found: self.dim,
                row: None,
            });
        }
        Ok(())
    }
}

impl<'a> From<&'a Vectors> for Queries<'a> {
    /// The rows of a [`Vectors`] (a trailing partial row, which
    /// [`Vectors`] never yields from its readers, is ignored).
    fn from(v: &'a Vectors) -> Queries<'a> {
        let dim = v.dim.max(1);
        let used = v.data.len() / dim * dim;
        Queries {
            data: &v.data[..used],
            dim,
        }
    }
}
