//! Kubernetes resource quantities (`500m`, `2`, `1.5`, `16Gi`, `1G`, `1e9`) read into
//! Flotilla's units: CPU in thousandths of a core, memory in MiB, whole GPUs.

/// The value of a quantity in its base unit (cores, bytes, devices); `None` if unreadable.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (number, suffix) = match suffix {
        s if (s.starts_with('e') || s.starts_with('E')) && s.len() > 1 => {
            let exponent: i32 = s[1..].parse().ok()?;
            return Some(number.parse::<f64>().ok()? * 10f64.powi(exponent));
        }
        s => (number, s),
    };
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    (value.is_finite() && value >= 0.0).then_some(value * factor)
}

pub fn cpu_millis(text: &str) -> Option<u64> {
    parse_quantity(text).map(|cores| (cores * 1000.0).round() as u64)
}

pub fn memory_mib(text: &str) -> Option<u64> {
    parse_quantity(text).map(|bytes| (bytes / (1024.0 * 1024.0)).floor() as u64)
}

pub fn whole(text: &str) -> Option<u32> {
    parse_quantity(text).map(|n| n.floor().min(f64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::{cpu_millis, memory_mib, parse_quantity, whole};

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(cpu_millis("500m"), Some(500));
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(memory_mib("16Gi"), Some(16 * 1024));
        assert_eq!(memory_mib("512Mi"), Some(512));
        assert_eq!(memory_mib("1G"), Some(953));
        assert_eq!(memory_mib("1e9"), Some(953));
        assert_eq!(memory_mib("1048576"), Some(1));
        assert_eq!(whole("4"), Some(4));
        assert_eq!(parse_quantity("12x"), None);
        assert_eq!(parse_quantity("-1"), None);
    }
}
