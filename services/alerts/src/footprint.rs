//! Where an alert applies, in our area codes: `geocode`s in our scheme are
//! looked up in the area hierarchy; `polygon`s and `circle`s are intersected
//! with the shipped district boundaries (with the `geo` crate). Geocodes in
//! other schemes (FIPS, UGC, SAME…) are foreign and ignored, so an alert
//! about somewhere else is recorded but causes nothing.

use std::collections::BTreeSet;

use geo::{Destination, Haversine, Intersects, LineString, Point, Polygon};
use oasiscap::v1dot2::Area;
use sumud_shared::areas::{AreaCatalog, Level};
use sumud_shared::deadletter::Reason;
use sumud_shared::envelope::Rejection;

/// Geocode schemes whose values are our area codes.
pub const OUR_SCHEMES: [&str; 3] = ["ISO3166-2", "ISO 3166-2", "sumud:area"];

/// Points used to approximate a circle as a polygon.
const CIRCLE_SEGMENTS: usize = 32;

/// The district boundaries as polygons, built once per catalog.
pub struct AreaIndex {
    districts: Vec<(String, Polygon<f64>)>,
}

impl AreaIndex {
    /// Indexes the districts of a catalog (boundaries are `[lon, lat]`).
    pub fn new(catalog: &AreaCatalog) -> AreaIndex {
        let districts = catalog
            .file()
            .areas
            .iter()
            .filter(|a| a.level == Level::District && a.boundary.len() >= 3)
            .map(|a| {
                let ring: LineString<f64> = a.boundary.iter().map(|p| (p[0], p[1])).collect();
                (a.code.clone(), Polygon::new(ring, vec![]))
            })
            .collect();
        AreaIndex { districts }
    }

    /// Districts a shape touches.
    fn touching<G: Intersects<Polygon<f64>>>(&self, shape: &G, out: &mut BTreeSet<String>) {
        for (code, poly) in &self.districts {
            if shape.intersects(poly) {
                out.insert(code.clone());
            }
        }
    }
}

/// Resolves the areas of one `info` block to our area codes.
///
/// A geocode in our scheme that is not in the hierarchy is an error (the
/// sender means one of our areas and names it wrongly); everything else that
/// does not land on our map is simply not ours.
pub fn resolve(
    areas: &[Area],
    catalog: &AreaCatalog,
    index: &AreaIndex,
) -> Result<BTreeSet<String>, Rejection> {
    let mut out = BTreeSet::new();
    for area in areas {
        for (name, value) in area.geocode.iter() {
            let value = value.trim().to_owned();
            if !OUR_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                continue;
            }
            if catalog.resolve(&value).is_none() {
                return Err(Rejection::new(
                    Reason::UnknownArea,
                    format!("geocode {name}={value:?} is not in the area hierarchy"),
                ));
            }
            out.insert(value);
        }
        for p in &area.polygons {
            let ring: LineString<f64> =
                p.iter().map(|pt| (pt.longitude(), pt.latitude())).collect();
            index.touching(&Polygon::new(ring, vec![]), &mut out);
        }
        for c in &area.circles {
            let centre = Point::new(c.center.longitude(), c.center.latitude());
            if c.radius <= 0.0 {
                index.touching(&centre, &mut out);
            } else {
                index.touching(&circle(centre, c.radius * 1000.0), &mut out);
            }
        }
    }
    Ok(out)
}

/// A circle of `radius_m` metres as a polygon of geodesic points.
fn circle(centre: Point<f64>, radius_m: f64) -> Polygon<f64> {
    let ring: LineString<f64> = (0..=CIRCLE_SEGMENTS)
        .map(|i| {
            let bearing = 360.0 * (i % CIRCLE_SEGMENTS) as f64 / CIRCLE_SEGMENTS as f64;
            Haversine.destination(centre, bearing, radius_m)
        })
        .collect();
    Polygon::new(ring, vec![])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn areas_of(xml_areas: &str) -> Vec<Area> {
        let doc = format!(
            r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>t</identifier><sender>s</sender>
            <sent>2026-11-29T06:00:00+03:00</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
            <info><category>Met</category><event>Flood</event><urgency>Immediate</urgency><severity>Severe</severity>
            <certainty>Likely</certainty>{xml_areas}</info></alert>"#
        );
        let alert: oasiscap::Alert = doc.parse().unwrap();
        alert.into_latest().info.remove(0).areas
    }

    fn resolved(xml_areas: &str) -> Result<BTreeSet<String>, Rejection> {
        let catalog = AreaCatalog::default_catalog();
        resolve(&areas_of(xml_areas), catalog, &AreaIndex::new(catalog))
    }

    /// A small square around a district's centroid, as CAP `lat,lon` text.
    fn square_around(code: &str, half: f64) -> String {
        let c = AreaCatalog::default_catalog().get(code).unwrap().centroid;
        let (lon, lat) = (c[0], c[1]);
        format!(
            "{},{} {},{} {},{} {},{} {},{}",
            lat - half,
            lon - half,
            lat - half,
            lon + half,
            lat + half,
            lon + half,
            lat + half,
            lon - half,
            lat - half,
            lon - half
        )
    }

    #[test]
    fn geocodes_in_our_scheme_are_area_codes() {
        let got = resolved("<area><areaDesc>x</areaDesc><geocode><valueName>ISO3166-2</valueName><value>JO-MN</value></geocode></area>").unwrap();
        assert_eq!(got, BTreeSet::from(["JO-MN".to_string()]));
    }

    #[test]
    fn an_unknown_geocode_in_our_scheme_is_refused() {
        let r = resolved("<area><areaDesc>x</areaDesc><geocode><valueName>ISO3166-2</valueName><value>JO-ZZ</value></geocode></area>").unwrap_err();
        assert_eq!(r.reason, Reason::UnknownArea);
    }

    #[test]
    fn foreign_geocodes_are_ignored() {
        let got = resolved("<area><areaDesc>x</areaDesc><geocode><valueName>FIPS6</valueName><value>031001</value></geocode></area>").unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn a_small_polygon_lands_on_the_district_around_it() {
        let district = "JO-MN-01";
        let poly = square_around(district, 0.01);
        let got = resolved(&format!(
            "<area><areaDesc>x</areaDesc><polygon>{poly}</polygon></area>"
        ))
        .unwrap();
        assert!(got.contains(district), "{got:?}");
        assert!(got.iter().all(|c| c.starts_with("JO-")));
    }

    #[test]
    fn a_point_circle_lands_on_one_district_and_a_wide_one_on_several() {
        let c = AreaCatalog::default_catalog()
            .get("JO-AM-01")
            .unwrap()
            .centroid;
        let point = resolved(&format!(
            "<area><areaDesc>x</areaDesc><circle>{},{} 0</circle></area>",
            c[1], c[0]
        ))
        .unwrap();
        assert_eq!(point.len(), 1, "{point:?}");
        let wide = resolved(&format!(
            "<area><areaDesc>x</areaDesc><circle>{},{} 60</circle></area>",
            c[1], c[0]
        ))
        .unwrap();
        assert!(wide.len() > 3, "{wide:?}");
        assert!(wide.is_superset(&point));
    }

    #[test]
    fn shapes_far_from_our_map_resolve_to_nothing() {
        let got = resolved("<area><areaDesc>California</areaDesc><polygon>38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14</polygon><circle>32.9525,-115.5527 0</circle></area>").unwrap();
        assert!(got.is_empty());
    }
}
