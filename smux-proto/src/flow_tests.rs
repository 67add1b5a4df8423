//! Unit tests of version 2 flow control, one behaviour each.

use super::*;
use crate::wire::Version;

const INITIAL: usize = INITIAL_PEER_WINDOW as usize;

fn config() -> Config {
    let mut c = Config::default();
    c.with_version(Version::V2);
    c
}

/// A window of `window` bytes whose peer has used none of it.
fn window(window: usize) -> RecvWindow {
    let mut w = RecvWindow::new(window);
    w.set_window(window);
    w
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- RecvWindow ----

#[test]
fn a_grant_is_due_on_the_first_read_then_every_half_window() {
    let mut w = RecvWindow::new(INITIAL);
    w.set_window(100);
    assert_eq!(w.credit(), INITIAL);
    assert!(!w.grant_due(), "nothing read yet");
    w.note_consumed(1);
    assert!(w.grant_due(), "the first read");
    w.grant(1);
    w.note_consumed(48);
    assert!(!w.grant_due());
    w.note_consumed(2);
    assert!(w.grant_due(), "half a window read since the last grant");
    w.grant(50);
    assert_eq!(w.consumed, 51);
    assert_eq!(w.credit(), INITIAL);
}

#[test]
fn a_grant_is_due_once_less_than_half_a_window_is_left() {
    let mut w = window(1000);
    w.note_consumed(1);
    w.grant(0);
    // A grant the budget cut short: the credit is low, though little was read since.
    w.credit = 400;
    w.note_consumed(10);
    assert!(w.grant_due());
}

#[test]
fn reading_shrinks_the_credit_and_a_grant_moves_the_edge_back_right() {
    let mut w = window(1000);
    w.note_consumed(300);
    assert_eq!((w.credit(), w.consumed), (700, 300));
    w.grant(200);
    assert_eq!(w.credit(), 900, "the edge moved right by the grant");
    w.top_up();
    assert_eq!(w.credit(), 1000, "a top-up grants up to a window");
    w.top_up();
    assert_eq!(w.credit(), 1000, "never past it");
}

#[test]
fn consumed_counts_mod_2_pow_32() {
    let mut w = window(1000);
    w.consumed = u32::MAX - 1;
    w.note_consumed(5);
    assert_eq!(w.consumed, 3);
}

#[test]
fn taking_the_credit_leaves_none() {
    let mut w = window(1000);
    assert_eq!(w.take_credit(), 1000);
    assert_eq!(w.credit(), 0);
}

#[test]
fn an_upd_carries_consumed_and_credit() {
    let mut w = window(1000);
    w.note_consumed(600);
    w.top_up();
    assert_eq!(w.send_upd(Instant::now()), (600, 1000));
    assert!(w.tuning.state.is_none(), "no tuning, no measurements");
}

// ---- SendWindow ----

#[test]
fn the_send_window_starts_at_the_initial_window_and_follows_upds() {
    let mut s = SendWindow::default();
    assert_eq!(s.available(), INITIAL);
    s.note_written(1000);
    assert_eq!(s.available(), INITIAL - 1000);
    s.apply_upd(500, 600);
    assert_eq!(s.available(), 100);
    // A peer that shrinks its window below what is in flight leaves no room, not a wrap.
    s.apply_upd(0, 10);
    assert_eq!(s.available(), 0);
}

#[test]
fn the_send_window_survives_counter_wrap() {
    let mut s = SendWindow {
        written: u32::MAX - 10,
        peer_consumed: u32::MAX - 10,
        peer_window: INITIAL_PEER_WINDOW,
    };
    s.note_written(100);
    assert_eq!(s.available(), INITIAL - 100);
}

// ---- FlowControl: the budget ----

#[test]
fn owed_is_what_was_lent_and_granted_less_what_was_read_or_repaid() {
    let c = config();
    let mut f = FlowControl::default();
    let mut w = window(c.stream_window() as usize);
    f.lend(w.credit());
    assert!(f.on_read(&mut w, 1000), "a first read makes a grant due");
    assert_eq!(f.owed(), w.credit());
    let g = f.grow(&mut w, (1000, 0), Instant::now(), &c);
    assert_eq!(
        g,
        Grant {
            moved: true,
            complete: true
        }
    );
    assert_eq!(f.owed(), w.credit());
    f.repay(w.take_credit());
    assert_eq!(f.owed(), 0);
}

#[test]
fn a_window_grows_only_within_the_budget_but_always_to_min_credit() {
    let mut c = config();
    c.with_stream_window(1 << 20)
        .with_max_session_window(1 << 20);
    let mut f = FlowControl::default();
    // Other streams hold all of the budget.
    f.lend(1 << 20);
    let mut w = RecvWindow::new(0);
    w.set_window(1 << 20);
    let g = f.grow(&mut w, (0, 0), Instant::now(), &c);
    assert_eq!(w.credit(), MIN_CREDIT, "the floor, whatever the budget");
    assert_eq!(
        g,
        Grant {
            moved: true,
            complete: false
        }
    );
    assert_eq!(f.owed(), (1 << 20) + MIN_CREDIT);
}

#[test]
fn a_sliver_of_budget_is_not_worth_an_upd() {
    let mut c = config();
    c.with_stream_window(1 << 20)
        .with_max_session_window(1 << 21);
    let mut f = FlowControl::default();
    let mut w = RecvWindow::new(MIN_CREDIT);
    w.set_window(1 << 20);
    // Room for 1,000 bytes: less than a quarter window and less than MIN_CREDIT.
    f.lend((1 << 21) - 1000);
    let g = f.grow(&mut w, (0, 0), Instant::now(), &c);
    assert_eq!(
        g,
        Grant {
            moved: false,
            complete: false
        }
    );
    assert_eq!(w.credit(), MIN_CREDIT);
}

#[test]
fn waiters_are_served_once_a_quarter_window_is_free() {
    let c = config();
    let quarter = c.stream_window() as usize / 4;
    let mut f = FlowControl::default();
    f.lend(c.max_session_window() - quarter);
    assert!(f.has_room_for_waiters(&c));
    f.lend(1);
    assert!(!f.has_room_for_waiters(&c));
}

// ---- FlowControl: tuning ----

#[test]
fn fresh_streams_start_at_the_tuned_window_only_with_tuning() {
    let mut c = config();
    let mut f = FlowControl::default();
    assert_eq!(f.starting_window(&c), c.stream_window() as usize);
    f.tuned_window = 4 << 20;
    assert_eq!(f.starting_window(&c), 4 << 20);
    c.with_window_tuning(false);
    assert_eq!(f.starting_window(&c), c.stream_window() as usize);
}

/// A window that has made a grant at `t0` whose UPD went out then, with `f`'s round trip
/// measured as `rtt`.
fn granted(f: &mut FlowControl, c: &Config, t0: Instant, rtt: Duration) -> RecvWindow {
    let mut w = window(c.stream_window() as usize);
    f.lend(w.credit());
    f.on_read(&mut w, 1000);
    f.grow(&mut w, (1000, 0), t0, c);
    w.send_upd(t0);
    f.loaded_round_trip = Some(rtt);
    w
}

#[test]
fn the_first_data_past_the_old_edge_gives_a_round_trip() {
    let c = config();
    let mut f = FlowControl::default();
    let t0 = Instant::now();
    let mut w = window(c.stream_window() as usize);
    f.lend(w.credit());
    f.on_read(&mut w, 1000);
    let edge = 1000 + w.credit() as u64;
    f.grow(&mut w, (1000, 0), t0, &c);
    w.send_upd(t0);
    // Data up to the old edge says nothing of the UPD.
    f.note_arrival(&mut w, 100, edge, 0, t0 + ms(5));
    assert_eq!(f.round_trip(), None);
    f.note_arrival(&mut w, 100, edge + 1, 0, t0 + ms(40));
    assert_eq!(f.round_trip(), Some(ms(40)));
    assert_eq!(f.loaded_round_trip, Some(ms(40)));
}

#[test]
fn round_trips_keep_the_shortest_and_average_the_recent() {
    let mut f = FlowControl {
        round_trip: Some(ms(40)),
        loaded_round_trip: Some(ms(40)),
        ..FlowControl::default()
    };
    let c = config();
    let t0 = Instant::now();
    let mut w = granted(&mut f, &c, t0, ms(40));
    let edge = w.tuning.state.as_ref().unwrap().probe.unwrap().1;
    f.note_arrival(&mut w, 1, edge + 1, 0, t0 + ms(120));
    assert_eq!(f.round_trip(), Some(ms(40)));
    assert_eq!(f.loaded_round_trip, Some(ms(50)), "(7 * 40 + 120) / 8");
}

#[test]
fn data_near_the_edge_holds_the_peer_back() {
    let mut f = FlowControl::default();
    let mut w = window(1 << 20);
    f.note_arrival(&mut w, 1000, 1000, 1000, Instant::now());
    assert!(!w.tuning.state.as_ref().unwrap().held_back);
    // Within an eighth of a window of the edge.
    let unread = w.credit() - (1 << 17);
    f.note_arrival(&mut w, 1000, unread as u64, unread, Instant::now());
    assert!(w.tuning.state.as_ref().unwrap().held_back);
}

#[test]
fn half_a_window_within_a_round_trip_holds_the_peer_back() {
    let mut f = FlowControl {
        loaded_round_trip: Some(ms(100)),
        ..FlowControl::default()
    };
    let mut w = window(1 << 20);
    let t0 = Instant::now();
    f.note_arrival(&mut w, 1 << 19, 1 << 19, 0, t0);
    assert!(!w.tuning.state.as_ref().unwrap().held_back);
    // The next round trip begins: the last one carried half a window.
    f.note_arrival(&mut w, 1, (1 << 19) + 1, 0, t0 + ms(100));
    assert!(w.tuning.state.as_ref().unwrap().held_back);
}

#[test]
fn a_window_doubles_when_it_held_the_peer_back_and_the_reader_kept_up() {
    let mut c = config();
    c.with_max_stream_window(c.stream_window() * 3);
    let start = c.stream_window() as usize;
    let mut f = FlowControl::default();
    let t0 = Instant::now();
    let mut w = granted(&mut f, &c, t0, ms(100));
    // Not held back: no growth.
    f.tune(&mut w, t0 + ms(50), &c);
    assert_eq!(w.window(), start);
    w.tuning.state_mut().held_back = true;
    // Held back, but the reader took longer than one and a half round trips.
    f.tune(&mut w, t0 + ms(151), &c);
    assert_eq!(w.window(), start);
    f.tune(&mut w, t0 + ms(150), &c);
    assert_eq!(w.window(), 2 * start);
    assert_eq!(
        f.starting_window(&c),
        2 * start,
        "fresh streams start there"
    );
    f.tune(&mut w, t0 + ms(150), &c);
    assert_eq!(w.window(), 3 * start, "up to max_stream_window");
}

#[test]
fn no_tuning_without_a_round_trip_or_with_tuning_off() {
    let mut c = config();
    let mut f = FlowControl::default();
    let t0 = Instant::now();
    let mut w = granted(&mut f, &c, t0, ms(100));
    w.tuning.state_mut().held_back = true;
    f.loaded_round_trip = None;
    f.tune(&mut w, t0, &c);
    assert_eq!(w.window(), c.stream_window() as usize);
    f.loaded_round_trip = Some(ms(100));
    c.with_window_tuning(false);
    f.tune(&mut w, t0, &c);
    assert_eq!(w.window(), c.stream_window() as usize);
}

#[test]
fn a_grant_with_tuning_marks_its_edge_for_the_next_upd() {
    let c = config();
    let mut f = FlowControl::default();
    let t0 = Instant::now();
    let mut w = window(c.stream_window() as usize);
    f.lend(w.credit());
    f.on_read(&mut w, 1000);
    let edge = 1000 + w.credit() as u64;
    f.grow(&mut w, (1500, 500), t0, &c);
    let t = w.tuning.state.as_ref().unwrap();
    assert_eq!((t.probe_edge, t.last_grant), (Some(edge), Some(t0)));
    w.send_upd(t0 + ms(1));
    let t = w.tuning.state.as_ref().unwrap();
    assert_eq!((t.probe_edge, t.probe), (None, Some((t0 + ms(1), edge))));
    // Forgotten once nobody reads the stream.
    w.forget_tuning();
    assert!(w.tuning.state.is_none());
}
