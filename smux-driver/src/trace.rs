//! Events for the optional `tracing` feature: nothing at all without it.
//!
//! Each session has a span (`smux`, with its role and version); events name it as their
//! parent, whichever task emits them. Streams opened, accepted, closed and refused are
//! `debug`; a stream the session reset is `warn`; the end of the session is `debug` when
//! orderly, `warn` otherwise. Nothing per frame.

/// A `debug` event in the session's span (`$st`: the state, which holds it). The session's
/// end is reported where it is decided (`State::take_result`), `warn` unless orderly.
macro_rules! event_debug {
    ($st:expr, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            // The span field alone, borrowed apart from the state's other fields (the
            // macro's closure would otherwise take all of `$st`).
            let span = &$st.span;
            tracing::debug!(parent: span, $($arg)+);
        }
    }};
}

/// A `warn` event in the session's span, as [`event_debug`].
macro_rules! event_warn {
    ($st:expr, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            // The span field alone, borrowed apart from the state's other fields (the
            // macro's closure would otherwise take all of `$st`).
            let span = &$st.span;
            tracing::warn!(parent: span, $($arg)+);
        }
    }};
}

pub(crate) use {event_debug, event_warn};
