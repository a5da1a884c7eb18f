//! Distances and the grid cells that narrow a radius query inside the
//! index. A listing is indexed under one cell per level; a query takes the
//! finest level whose cells cover its bounding box in a handful of terms,
//! and the exact great-circle distance then decides.

/// Mean Earth radius (IUGG), the same sphere PostGIS's `use_spheroid =
/// false` distances use.
pub const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Cell sizes in degrees, finest first (~0.5 km to ~570 km at the equator).
const LEVELS: [f64; 6] = [0.005, 0.02, 0.08, 0.32, 1.28, 5.12];

/// At most this many cells per query (a 6 × 6 block).
const MAX_CELLS: i64 = 36;

/// Great-circle (haversine) distance in kilometres.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lng1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lng2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lng2 - lng1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

fn cell(level: usize, lat: f64, lng: f64) -> String {
    let size = LEVELS[level];
    format!(
        "{level}:{}:{}",
        (lat / size).floor() as i64,
        (lng / size).floor() as i64
    )
}

/// `[south, north, west, east]` containing every point within `radius_km`
/// (with a little slack), or `None` near a pole or the antimeridian.
pub fn bounding_box(lat: f64, lng: f64, radius_km: f64) -> Option<[f64; 4]> {
    let dlat = (radius_km / EARTH_RADIUS_KM).to_degrees() * 1.001;
    let cos = lat.to_radians().cos();
    if cos < 0.01 {
        return None;
    }
    // The widest point of the circle is poleward of its centre.
    let widest = (lat.abs() + dlat).min(89.9).to_radians().cos();
    let dlng = dlat / widest.min(cos);
    let bbox = [lat - dlat, lat + dlat, lng - dlng, lng + dlng];
    (bbox[2] >= -180.0 && bbox[3] <= 180.0).then_some(bbox)
}

/// The terms a listing at `(lat, lng)` is indexed under.
pub fn cells(lat: f64, lng: f64) -> Vec<String> {
    (0..LEVELS.len())
        .map(|level| cell(level, lat, lng))
        .collect()
}

/// Terms whose union contains every point within `radius_km` of the
/// centre, or `None` when no level covers it in few enough cells (a huge
/// radius, a pole, the antimeridian): the exact filter alone decides then.
pub fn covering(lat: f64, lng: f64, radius_km: f64) -> Option<Vec<String>> {
    let dlat = (radius_km / EARTH_RADIUS_KM).to_degrees();
    let cos = lat.to_radians().cos();
    if cos < 0.01 {
        return None;
    }
    let dlng = dlat / cos;
    let (south, north) = (lat - dlat, lat + dlat);
    let (west, east) = (lng - dlng, lng + dlng);
    if south < -90.0 || north > 90.0 || west < -180.0 || east > 180.0 {
        return None;
    }
    for (level, size) in LEVELS.iter().enumerate() {
        let (y0, y1) = ((south / size).floor() as i64, (north / size).floor() as i64);
        let (x0, x1) = ((west / size).floor() as i64, (east / size).floor() as i64);
        if (y1 - y0 + 1) * (x1 - x0 + 1) <= MAX_CELLS {
            let mut out = Vec::new();
            for y in y0..=y1 {
                for x in x0..=x1 {
                    out.push(format!("{level}:{y}:{x}"));
                }
            }
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_distances() {
        // Paris (Notre-Dame) to London (Charing Cross): ~343.5 km.
        let d = distance_km((48.8530, 2.3499), (51.5080, -0.1247));
        assert!((d - 343.5).abs() < 1.0, "{d}");
        assert_eq!(distance_km((10.0, 10.0), (10.0, 10.0)), 0.0);
    }

    proptest! {
        /// Every point within the radius lies in one of the covering cells.
        #[test]
        fn covering_contains_every_point_in_the_radius(
            lat in -60.0f64..60.0, lng in -170.0f64..170.0,
            radius in 0.1f64..50.0, bearing in 0.0f64..360.0, fraction in 0.0f64..1.0,
        ) {
            let Some(terms) = covering(lat, lng, radius) else { return Ok(()) };
            // Walk `fraction * radius` from the centre along `bearing`.
            let d = fraction * radius / EARTH_RADIUS_KM;
            let (phi, lambda, theta) = (lat.to_radians(), lng.to_radians(), bearing.to_radians());
            let phi2 = (phi.sin() * d.cos() + phi.cos() * d.sin() * theta.cos()).asin();
            let lambda2 = lambda
                + (theta.sin() * d.sin() * phi.cos()).atan2(d.cos() - phi.sin() * phi2.sin());
            let point = (phi2.to_degrees(), lambda2.to_degrees());
            prop_assert!(distance_km((lat, lng), point) <= radius + 1e-6);
            let indexed = cells(point.0, point.1);
            prop_assert!(indexed.iter().any(|c| terms.contains(c)), "{point:?} not covered");
        }
    }
}
