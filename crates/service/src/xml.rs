//! Small helpers for reading XML with quick-xml, shared by the XML surfaces (SOAP, Bulk API 1.0
//! job documents and batches): element names without their prefix, and what an entity or
//! character reference stands for (quick-xml reports references apart from the text around them).

use quick_xml::events::BytesRef;

/// The local part of a (possibly prefixed) name: `soapenv:Body` → `Body`.
pub fn local_name(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    s.rsplit(':').next().unwrap_or("").to_string()
}

/// The character a reference stands for: `&#x263A;`, `&#9786;` or one of the five predefined
/// entities. Any other entity is an error (documents may not declare their own).
pub fn reference_char(r: &BytesRef<'_>) -> Result<char, String> {
    if let Some(c) = r
        .resolve_char_ref()
        .map_err(|e| format!("bad character reference: {e}"))?
    {
        return Ok(c);
    }
    let name = r.decode().map_err(|e| format!("bad entity: {e}"))?;
    match name.as_ref() {
        "amp" => Ok('&'),
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "quot" => Ok('"'),
        "apos" => Ok('\''),
        other => Err(format!("unknown entity &{other};")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;

    fn refs(doc: &str) -> Vec<Result<char, String>> {
        let mut r = quick_xml::Reader::from_str(doc);
        let mut out = Vec::new();
        loop {
            match r.read_event().unwrap() {
                Event::GeneralRef(g) => out.push(reference_char(&g)),
                Event::Eof => return out,
                _ => {}
            }
        }
    }

    #[test]
    fn references_and_local_names() {
        assert_eq!(
            refs("<a>&amp;&lt;&gt;&quot;&apos;&#x263A;&#65;</a>"),
            ['&', '<', '>', '"', '\'', '\u{263A}', 'A'].map(Ok)
        );
        assert!(refs("<a>&nope;</a>")[0]
            .as_ref()
            .unwrap_err()
            .contains("&nope;"));
        assert_eq!(local_name(b"soapenv:Body"), "Body");
        assert_eq!(local_name(b"jobInfo"), "jobInfo");
    }
}
