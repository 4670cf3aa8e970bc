//! The hand-off's marks, alone.

use super::*;

fn key(k: &str) -> TaskKey {
    ("t".to_owned(), k.to_owned())
}

#[test]
fn a_release_marks_a_key_until_this_pods_view_is_the_askers() {
    let (asker, mine, other) = (1, 2, 3);
    let mut handoffs = Handoffs::default();
    handoffs.give(key("a"), asker, mine);
    handoffs.give(key("b"), other, mine);
    assert!(
        handoffs.is_given("t", "a", true, mine),
        "held while the views differ"
    );
    // The view caught up with the asker's, then moved on before any call of the key:
    // the mark has ended all the same.
    handoffs.caught_up(asker);
    assert!(!handoffs.is_given("t", "a", true, mine));
    assert!(
        handoffs.is_given("t", "b", true, mine),
        "another asker's mark stays"
    );

    handoffs.give(key("c"), mine, mine);
    assert!(
        !handoffs.is_given("t", "c", true, other),
        "asked with the same view: no mark"
    );
}
