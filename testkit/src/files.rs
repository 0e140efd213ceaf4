//! Reading the files of a case: gunzipped when the name ends in `.gz`
//! (any number of gzip members, as `clickflow` reads them), and JSON Lines
//! cut into lines the way a reader hands them to the decoder.

use std::io::Read;
use std::path::Path;

/// The bytes of `path`, gunzipped when its name ends in `.gz`; panics
/// naming the file when it cannot be opened or read.
pub fn read_maybe_gz_bytes(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let mut bytes = Vec::new();
    let result = if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file)).read_to_end(&mut bytes)
    } else {
        std::io::BufReader::new(file).read_to_end(&mut bytes)
    };
    result.unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    bytes
}

/// [`read_maybe_gz_bytes`] as text; panics naming the file when it is not UTF-8.
pub fn read_maybe_gz(path: &Path) -> String {
    String::from_utf8(read_maybe_gz_bytes(path)).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

/// The lines of a JSON Lines file, without their `\n` (a CR stays, as a
/// reader hands it to the decoder; blank lines stay too), after a byte
/// order mark at the very start of the file, which is skipped (SPEC
/// section 1). Text after the last `\n` is a line; a final `\n` leaves an
/// empty last line.
pub fn json_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn json_lines_skips_a_byte_order_mark_only_at_the_very_start() {
        let lines = json_lines(b"\xEF\xBB\xBF{\"a\": 1}\r\n\n\xEF\xBB\xBF{}");
        assert_eq!(lines, [b"{\"a\": 1}\r".to_vec(), Vec::new(), b"\xEF\xBB\xBF{}".to_vec()]);
        assert_eq!(json_lines(b"{}\n"), [b"{}".to_vec(), Vec::new()]);
    }

    #[test]
    fn gzipped_files_read_like_plain_ones_even_in_several_members() {
        let dir = std::env::temp_dir().join(format!("clickflow-testkit-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("events.jsonl");
        std::fs::write(&plain, "one\ntwo\n").unwrap();
        let gz = dir.join("events.jsonl.gz");
        let mut bytes = Vec::new();
        for member in ["one\n", "two\n"] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(member.as_bytes()).unwrap();
            bytes.extend(enc.finish().unwrap());
        }
        std::fs::write(&gz, bytes).unwrap();
        assert_eq!(read_maybe_gz(&gz), read_maybe_gz(&plain));
        assert_eq!(read_maybe_gz_bytes(&gz), b"one\ntwo\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
