//! The area hierarchy: governorates, districts and localities below them.
//!
//! The hierarchy is data (`shared/data/areas/*.json`), so the system is
//! country-agnostic; Jordan's governorates and districts ship as the default.
//! Locality codes are not enumerated: any `<district>-NNN` is a locality of
//! that district, so a registry can use finer codes than the shipped data.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

const DEFAULT_AREAS: &str = include_str!("../data/areas/jordan.json");

/// A level in the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// First-level division (ISO 3166-2).
    Governorate,
    /// Second-level division.
    District,
}

/// A name in the languages the dashboards show.
#[derive(Debug, Clone, Deserialize)]
pub struct Names {
    /// English.
    pub en: String,
    /// Arabic.
    pub ar: String,
}

/// One governorate or district as shipped in the data file.
#[derive(Debug, Clone, Deserialize)]
pub struct Area {
    /// Hierarchical code, e.g. `JO-MN` or `JO-MN-02`.
    pub code: String,
    /// Governorate or district.
    pub level: Level,
    /// The enclosing area's code.
    pub parent: Option<String>,
    /// Display names.
    pub name: Names,
    /// Share of the parent's (or the country's) population, used by the
    /// synthetic registry generator.
    pub population_share: f64,
    /// `[longitude, latitude]`.
    pub centroid: [f64; 2],
    /// Simplified boundary ring of `[longitude, latitude]` points.
    pub boundary: Vec<[f64; 2]>,
}

/// A country's area data file.
#[derive(Debug, Clone, Deserialize)]
pub struct AreaFile {
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    /// Display names.
    pub name: Names,
    /// The currency programmes pay in by default.
    pub currency: String,
    /// Governorates and districts.
    pub areas: Vec<Area>,
}

/// Where a code sits in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaPath {
    /// The governorate containing it.
    pub governorate: String,
    /// The district, when the code is a district or below.
    pub district: Option<String>,
    /// The code itself.
    pub code: String,
}

/// The loaded hierarchy with fast lookups.
pub struct AreaCatalog {
    file: AreaFile,
    index: HashMap<String, usize>,
}

static DEFAULT: LazyLock<AreaCatalog> = LazyLock::new(|| {
    AreaCatalog::from_json(DEFAULT_AREAS).expect("the shipped area data is valid")
});

impl AreaCatalog {
    /// The shipped default (Jordan).
    pub fn default_catalog() -> &'static AreaCatalog {
        &DEFAULT
    }

    /// Loads and checks a data file: unique codes, parents that exist.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let file: AreaFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut index = HashMap::new();
        for (i, a) in file.areas.iter().enumerate() {
            if index.insert(a.code.clone(), i).is_some() {
                return Err(format!("area code {} appears twice", a.code));
            }
        }
        for a in &file.areas {
            match (&a.level, &a.parent) {
                (Level::Governorate, None) => {}
                (Level::District, Some(p)) if index.contains_key(p) => {}
                _ => return Err(format!("area {} has an invalid parent", a.code)),
            }
        }
        Ok(AreaCatalog { file, index })
    }

    /// The raw data (for maps and generators).
    pub fn file(&self) -> &AreaFile {
        &self.file
    }

    /// Looks up a governorate or district.
    pub fn get(&self, code: &str) -> Option<&Area> {
        self.index.get(code).map(|i| &self.file.areas[*i])
    }

    /// All governorates.
    pub fn governorates(&self) -> impl Iterator<Item = &Area> {
        self.file
            .areas
            .iter()
            .filter(|a| a.level == Level::Governorate)
    }

    /// The districts of one governorate.
    pub fn districts_of<'a>(&'a self, governorate: &'a str) -> impl Iterator<Item = &'a Area> + 'a {
        self.file
            .areas
            .iter()
            .filter(move |a| a.parent.as_deref() == Some(governorate))
    }

    /// Places a code in the hierarchy, or `None` if it is unknown. Accepts
    /// governorates, districts and localities (`<district>-NNN`).
    pub fn resolve(&self, code: &str) -> Option<AreaPath> {
        if let Some(area) = self.get(code) {
            return Some(match area.level {
                Level::Governorate => AreaPath {
                    governorate: area.code.clone(),
                    district: None,
                    code: area.code.clone(),
                },
                Level::District => AreaPath {
                    governorate: area.parent.clone().unwrap_or_default(),
                    district: Some(area.code.clone()),
                    code: area.code.clone(),
                },
            });
        }
        let (district, locality) = code.rsplit_once('-')?;
        let is_locality = locality.len() == 3 && locality.bytes().all(|b| b.is_ascii_digit());
        let parent = self.get(district)?;
        (is_locality && parent.level == Level::District).then(|| AreaPath {
            governorate: parent.parent.clone().unwrap_or_default(),
            district: Some(parent.code.clone()),
            code: code.to_owned(),
        })
    }

    /// Whether `area` lies inside (or is) `container`: a crisis naming a
    /// governorate covers everything in it.
    pub fn contains(&self, container: &str, area: &str) -> bool {
        area == container
            || (area.starts_with(container) && area.as_bytes().get(container.len()) == Some(&b'-'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_catalog_has_twelve_governorates_with_districts() {
        let c = AreaCatalog::default_catalog();
        assert_eq!(c.governorates().count(), 12);
        for g in c.governorates() {
            assert!(
                c.districts_of(&g.code).count() >= 1,
                "{} has districts",
                g.code
            );
        }
        let total: f64 = c.governorates().map(|g| g.population_share).sum();
        assert!((total - 1.0).abs() < 0.01);
    }

    #[test]
    fn localities_resolve_to_their_district_and_governorate() {
        let c = AreaCatalog::default_catalog();
        let p = c.resolve("JO-MN-01-007").unwrap();
        assert_eq!(p.governorate, "JO-MN");
        assert_eq!(p.district.as_deref(), Some("JO-MN-01"));
        assert!(c.resolve("JO-MN-99").is_none());
        assert!(c.resolve("JO-MN-01-7").is_none());
        assert!(c.resolve("XX").is_none());
        assert_eq!(c.resolve("JO-AM").unwrap().district, None);
    }

    #[test]
    fn a_governorate_contains_its_districts_but_not_lookalikes() {
        let c = AreaCatalog::default_catalog();
        assert!(c.contains("JO-MN", "JO-MN-01-007"));
        assert!(c.contains("JO-MN-01", "JO-MN-01"));
        assert!(!c.contains("JO-MN-01", "JO-MN-011"));
        assert!(!c.contains("JO-MN", "JO-MA-01"));
    }
}
