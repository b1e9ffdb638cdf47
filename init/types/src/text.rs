//! Closeness of words, for "did you mean" in messages.

/// Edit distance (Levenshtein) between `a` and `b`, in characters.
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, when it is at most 2 edits away (the
/// first in sort order among equally close ones).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(c, word), c))
        .min()
        .filter(|(d, _)| *d <= 2)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("SYS_ADMN", "SYS_ADMIN"), 1);
        assert_eq!(nearest("imgae", ["name", "image"]), Some("image"));
        assert_eq!(nearest("zzzzzz", ["name", "image"]), None);
    }
}
