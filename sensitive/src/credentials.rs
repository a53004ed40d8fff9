//! Credential values in text and bytes (`password=…`, `secret: …`, `api_key=…`): the
//! words that introduce one, and the single-pass scan that finds the values.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, Input, MatchKind};

/// Words that, followed by `=` or `:`, introduce a credential. None is part of another,
/// so at most one of them starts at any position.
pub const CREDENTIAL_WORDS: [&[u8]; 7] = [
    b"password",
    b"passwd",
    b"pwd",
    b"secret",
    b"api_key",
    b"apikey",
    b"access_token",
];

/// [`CREDENTIAL_WORDS`] in any ASCII case, as one automaton built on first use: a search
/// finds the leftmost word at or after a position in one pass, without a lower-cased copy.
static CREDENTIAL_WORD_SEARCH: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(CREDENTIAL_WORDS)
        .expect("seven short ASCII words make an automaton")
});

/// True when `bytes` (any bytes) holds a credential value, that is when
/// [`credential_ranges`] would not be empty.
///
/// Allocates nothing. A value needs a word right before its `=` or `:` (spaces and quotes
/// aside), so a vectorised search for `=` and `:` with a look at the bytes before each
/// rejects nearly every clean field (most have neither); only bytes with a word before a
/// separator are searched for the words from the start, stopping at the first value.
pub fn contains_credential(bytes: &[u8]) -> bool {
    CredentialValues::new(bytes).next().is_some()
}

/// Whether `bytes`, less its trailing spaces and quotes, ends with a word of
/// [`CREDENTIAL_WORDS`] in any ASCII case. No word ends with a space or a quote, so this
/// holds for the bytes before the `=` or `:` of every credential value.
fn ends_with_credential_word(bytes: &[u8]) -> bool {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'"' | b'\''))
        .map_or(0, |last| last + 1);
    let Some(last) = end
        .checked_sub(1)
        .map(|last| bytes[last].to_ascii_lowercase())
    else {
        return false;
    };
    CREDENTIAL_WORDS.iter().any(|word| {
        word.last() == Some(&last)
            && end
                .checked_sub(word.len())
                .is_some_and(|start| bytes[start..end].eq_ignore_ascii_case(word))
    })
}

/// Byte ranges of the credential values in `bytes` (any bytes: Avro bodies too): the
/// run after a credential word (`password`, `passwd`, `pwd`, `secret`, `api_key`,
/// `apikey`, `access_token`, in any ASCII case) and `=` or `:` (spaces and quotes
/// allowed around it), up to a space, quote, `&`, `,` or `;` or a non-printable
/// byte — the shape of `password=…` in query strings, `secret: …` in headers and
/// JSON-ish text.
///
/// Returns `(start, end)` pairs, `start < end`, in increasing order and not
/// overlapping: the scan goes on after each value (or after a word with no `=` or `:`),
/// so a word inside a value starts nothing. The quick rejection of
/// [`contains_credential`], then one pass; only the result is allocated.
pub fn credential_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    CredentialValues::new(bytes).collect()
}

/// The credential values of a byte string, left to right: see [`credential_ranges`].
pub(crate) struct CredentialValues<'a> {
    bytes: &'a [u8],
    /// Where the search for the next word starts.
    at: usize,
}

impl<'a> CredentialValues<'a> {
    /// The values of `bytes`; none at once, without a search for the words, when no `=` or
    /// `:` in `bytes` has a word right before it.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        let candidate = memchr::memchr2_iter(b'=', b':', bytes)
            .any(|separator| ends_with_credential_word(&bytes[..separator]));
        CredentialValues {
            bytes,
            at: if candidate { 0 } else { bytes.len() },
        }
    }
}

impl Iterator for CredentialValues<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let bytes = self.bytes;
        while self.at < bytes.len() {
            let Some(word) = CREDENTIAL_WORD_SEARCH.find(Input::new(bytes).range(self.at..)) else {
                self.at = bytes.len();
                return None;
            };
            // Closing quotes and spaces between the word and the separator: `"password": "x"`.
            let after_word = skip_spaces_and_quotes(bytes, word.end());
            if !matches!(bytes.get(after_word), Some(b'=' | b':')) {
                self.at = after_word;
                continue;
            }
            let start = skip_spaces_and_quotes(bytes, after_word + 1);
            let end = bytes[start..]
                .iter()
                .position(|&b| {
                    !b.is_ascii_graphic() || matches!(b, b'"' | b'\'' | b'&' | b',' | b';')
                })
                .map_or(bytes.len(), |length| start + length);
            self.at = end;
            if end > start {
                return Some((start, end));
            }
        }
        None
    }
}

/// The first position at or after `from` whose byte is not a space or a quote.
fn skip_spaces_and_quotes(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|b| !matches!(b, b' ' | b'"' | b'\''))
        .map_or(bytes.len(), |length| from + length)
}
