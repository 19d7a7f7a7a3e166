//! The XML of a statement as a small tree of elements, read with
//! `quick-xml`'s namespace-aware reader: element names are local names
//! (whatever prefix the sender chose), each element keeps its namespace,
//! attributes and text. The camt.054 and pain.002 readers walk it by
//! element name. A DOCTYPE is refused: ISO 20022 messages declare no
//! entities, and expanding them is how a small file exhausts memory.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::StatementError;

/// Deepest nesting read; ISO 20022 statements stay far below it.
const MAX_DEPTH: usize = 64;

/// One element.
#[derive(Debug, Default, Clone)]
pub(super) struct Element {
    /// Local name (no prefix).
    pub name: String,
    /// Namespace URI it is bound to, empty if none.
    pub namespace: String,
    /// Attributes by local name, unescaped.
    pub attributes: Vec<(String, String)>,
    /// Its text (entities resolved), trimmed.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child element, if any.
    pub fn first_child(&self) -> Option<&Element> {
        self.children.first()
    }

    /// Child elements named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at `path` below this one (first match at each step).
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter()
            .try_fold(self, |e, name| e.children.iter().find(|c| c.name == *name))
    }

    /// The non-empty text at `path`, if any.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path)
            .map(|e| e.text.as_str())
            .filter(|t| !t.is_empty())
    }

    /// An attribute's value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn bad(message: impl std::fmt::Display) -> StatementError {
    StatementError::UnknownFormat(format!("not well-formed XML: {message}"))
}

fn open(ns: ResolveResult, start: &BytesStart) -> Result<Element, StatementError> {
    let namespace = match ns {
        ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
        ResolveResult::Unbound => String::new(),
        ResolveResult::Unknown(p) => {
            return Err(bad(format!(
                "prefix {} is not declared",
                String::from_utf8_lossy(&p)
            )))
        }
    };
    let mut attributes = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(bad)?;
        let value = a.unescape_value().map_err(bad)?.into_owned();
        let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
        attributes.push((key, value));
    }
    Ok(Element {
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        namespace,
        attributes,
        ..Element::default()
    })
}

/// Reads a whole document; returns its root element.
pub(super) fn parse(text: &str) -> Result<Element, StatementError> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(bad)?;
        let text_of = |s: &str, stack: &mut Vec<Element>| {
            if let Some(top) = stack.last_mut() {
                top.text.push_str(s);
            }
        };
        match event {
            Event::Start(s) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(bad(format!("nested deeper than {MAX_DEPTH} elements")));
                }
                stack.push(open(ns, &s)?);
            }
            Event::Empty(s) => {
                let e = open(ns, &s)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => root = Some(e),
                }
            }
            Event::Text(t) => text_of(&t.xml_content().map_err(bad)?, &mut stack),
            Event::CData(t) => text_of(&t.xml_content().map_err(bad)?, &mut stack),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(bad)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(bad)?;
                        quick_xml::escape::unescape(&format!("&{name};"))
                            .map_err(bad)?
                            .into_owned()
                    }
                };
                text_of(&resolved, &mut stack);
            }
            Event::End(_) => {
                let mut e = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
                e.text = e.text.trim().to_owned();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => root = Some(e),
                }
            }
            Event::DocType(_) => {
                return Err(bad(
                    "a DOCTYPE is refused: ISO 20022 messages declare no entities",
                ))
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element"));
    }
    root.ok_or_else(|| bad("no root element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_to_local_names_and_their_namespace() {
        let doc = parse(
            r#"<?xml version="1.0"?><x:Document xmlns:x="urn:a"><x:Amt Ccy="JOD">1.5</x:Amt><x:Nm>A &amp; B&#33;</x:Nm></x:Document>"#,
        )
        .unwrap();
        assert_eq!(
            (doc.name.as_str(), doc.namespace.as_str()),
            ("Document", "urn:a")
        );
        assert_eq!(doc.text_at(&["Amt"]), Some("1.5"));
        assert_eq!(doc.at(&["Amt"]).unwrap().attribute("Ccy"), Some("JOD"));
        assert_eq!(doc.text_at(&["Nm"]), Some("A & B!"));
    }

    #[test]
    fn a_doctype_and_broken_documents_are_refused() {
        assert!(parse(r#"<!DOCTYPE d [<!ENTITY a "aaaa">]><d>&a;</d>"#).is_err());
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("<p:a/>").is_err(), "undeclared prefix");
    }
}
