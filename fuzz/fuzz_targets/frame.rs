//! The whole frame path: a few frames per input through `Engine::handle_frame`, on one engine, so
//! TCP state (the 302 responder's pending requests, the watch's streams, the flow table, the
//! fragment table) carries from frame to frame. The input format, the configuration (a metered
//! subscriber, one under redirect with the walled garden and the success watch, one with a
//! rating-group Final-Unit redirect) and the checks are in `weir_fuzz` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weir_fuzz::run_frames(data);
});
