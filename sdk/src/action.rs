//! What a stream or connection callback tells the host to do next.

/// What a stream callback tells the host to do next.
///
/// ```
/// use filterkit::Action;
/// assert_ne!(Action::Continue, Action::Pause);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the stream go on to the next filter.
    Continue,
    /// Stop here until [`crate::http::resume_request`] / [`crate::http::resume_response`] (or buffer the body,
    /// when returned from a body callback).
    Pause,
}

impl Action {
    pub(crate) fn as_raw(self) -> u32 {
        match self {
            Action::Continue => 0,
            Action::Pause => 1,
        }
    }
}
