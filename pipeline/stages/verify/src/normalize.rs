//! Comparing Vietnamese names as people write them. Case, spacing and the Unicode form of
//! the diacritics (precomposed or combining) vary between a portal form and the
//! population database and never matter. The diacritics themselves do — "Hương" and
//! "Hường" are different names — unless the applicant typed none at all (no Vietnamese
//! keyboard): then "Nguyen Thi Huong" matches "Nguyễn Thị Hương".

use unicode_normalization::UnicodeNormalization;

/// Whether a claimed name is the registry's name.
pub fn names_match(claimed: &str, registry: &str) -> bool {
    let (c, r) = (canonical(claimed), canonical(registry));
    if c == r {
        return true;
    }
    let typed_without_diacritics = c.is_ascii();
    typed_without_diacritics && fold_name(&c) == fold_name(&r)
}

/// NFC, lower case, single spaces.
fn canonical(name: &str) -> String {
    let composed: String = name.nfc().collect::<String>().to_lowercase();
    composed.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Folds a name to lower-case ASCII letters separated by single spaces.
pub fn fold_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in name.nfc() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(base_letter(c));
    }
    out
}

/// The base letter of a Vietnamese (or ASCII) character, lower-cased.
fn base_letter(c: char) -> char {
    const GROUPS: [(char, &str); 7] = [
        ('a', "aàáảãạăằắẳẵặâầấẩẫậAÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬ"),
        ('e', "eèéẻẽẹêềếểễệEÈÉẺẼẸÊỀẾỂỄỆ"),
        ('i', "iìíỉĩịIÌÍỈĨỊ"),
        ('o', "oòóỏõọôồốổỗộơờớởỡợOÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢ"),
        ('u', "uùúủũụưừứửữựUÙÚỦŨỤƯỪỨỬỮỰ"),
        ('y', "yỳýỷỹỵYỲÝỶỸỴ"),
        ('d', "dđDĐ"),
    ];
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    for (base, variants) in GROUPS {
        if variants.contains(c) {
            return base;
        }
    }
    c.to_lowercase().next().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case_diacritics_or_spacing() {
        assert_eq!(fold_name("Nguyễn Thị Hương"), "nguyen thi huong");
        assert_eq!(fold_name("  NGUYỄN   THỊ  HƯƠNG "), "nguyen thi huong");
        assert_eq!(fold_name("Đặng Quốc Việt"), "dang quoc viet");
        assert_eq!(fold_name("Lý Ỷ"), "ly y");
        assert_ne!(fold_name("Nguyễn Văn An"), fold_name("Nguyễn Văn Ân Hai"));
    }

    #[test]
    fn diacritics_matter_unless_none_were_typed() {
        assert!(names_match("NGUYỄN  THỊ HƯƠNG", "Nguyễn Thị Hương"));
        assert!(
            names_match("Nguyen Thi Huong", "Nguyễn Thị Hương"),
            "typed without diacritics"
        );
        assert!(!names_match("Nguyễn Thị Hường", "Nguyễn Thị Hương"), "a different name");
        // The same letters as combining marks (NFD) are the same name.
        let decomposed: String = "Nguyễn Thị Hương".nfd().collect();
        assert!(names_match(&decomposed, "Nguyễn Thị Hương"));
    }
}
