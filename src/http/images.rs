//! Challenge image URLs: as the catalog gives them, joined to a base URL, or presigned.
//!
//! The seed serves "challenge images with pre-signed URLs for secure access". A catalog's
//! `image` is either an absolute URL (returned as it is, whatever the mode) or a key such as
//! `challenges/earn-1000.png`, which becomes:
//! - [`ImageUrls::Plain`]: the key joined to `base` (or the key itself when there is none);
//! - [`ImageUrls::Presigned`]: a SigV4 presigned `GET` URL of the key in an S3-compatible
//!   bucket (AWS S3, MinIO, Ceph …), valid for `expires`. Signing is done by
//!   [`rusty_s3`], a sans-IO crate: it computes the URL and never talks to the bucket, so the
//!   progress query does no IO for images.

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::time::Duration;

/// How the progress query turns a catalog `image` into the URL it returns.
#[derive(Debug, Clone, Default)]
pub enum ImageUrls {
    /// Keys are returned as they are.
    #[default]
    AsIs,
    /// Keys are joined to a public base URL (a CDN, a static bucket website).
    Plain { base: String },
    /// Keys are presigned `GET` URLs of a private bucket.
    Presigned(Box<Presigner>),
}

/// A bucket and the credentials to presign its objects.
#[derive(Debug, Clone)]
pub struct Presigner {
    bucket: Bucket,
    credentials: Credentials,
    expires: Duration,
}

/// Where a private bucket is and how to sign for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketConfig {
    /// `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000` (MinIO) …
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Path style (`endpoint/bucket/key`, MinIO's default) rather than virtual-host style.
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
    /// How long a URL stays valid (SigV4 allows at most 7 days).
    pub expires: Duration,
}

/// SigV4's limit on a presigned URL's lifetime.
const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

impl Presigner {
    pub fn new(config: &BucketConfig) -> Result<Presigner, String> {
        let endpoint = config
            .endpoint
            .parse()
            .map_err(|e| format!("image bucket endpoint '{}': {e}", config.endpoint))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| format!("image bucket '{}': {e}", config.bucket))?;
        if config.expires.is_zero() || config.expires > MAX_EXPIRY {
            return Err(format!(
                "image URL expiry must be between 1 s and {} s",
                MAX_EXPIRY.as_secs()
            ));
        }
        Ok(Presigner {
            bucket,
            credentials: Credentials::new(config.access_key.clone(), config.secret_key.clone()),
            expires: config.expires,
        })
    }

    /// A presigned `GET` URL of `key`, or `None` when the key cannot form a URL.
    fn presign(&self, key: &str) -> Option<String> {
        // `sign` builds the object URL again and unwraps it: check it can be built first, so
        // no catalog key can make the request panic.
        self.bucket.object_url(key).ok()?;
        let action = self.bucket.get_object(Some(&self.credentials), key);
        Some(action.sign(self.expires).to_string())
    }
}

impl ImageUrls {
    /// The URL to return for a catalog `image`.
    pub fn resolve(&self, image: &str) -> String {
        if is_absolute(image) {
            return image.to_string();
        }
        let key = image.trim_start_matches('/');
        match self {
            ImageUrls::AsIs => image.to_string(),
            ImageUrls::Plain { base } => format!("{}/{key}", base.trim_end_matches('/')),
            ImageUrls::Presigned(p) => p.presign(key).unwrap_or_else(|| image.to_string()),
        }
    }
}

fn is_absolute(image: &str) -> bool {
    let lower = image.get(..8).unwrap_or(image).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minio() -> BucketConfig {
        BucketConfig {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "questline-images".into(),
            region: "us-east-1".into(),
            path_style: true,
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            expires: Duration::from_secs(900),
        }
    }

    #[test]
    fn keys_are_presigned_and_absolute_urls_kept() {
        let urls = ImageUrls::Presigned(Box::new(Presigner::new(&minio()).unwrap()));
        let url = urls.resolve("challenges/earn-1000.png");
        assert!(
            url.starts_with("http://127.0.0.1:9000/questline-images/challenges/earn-1000.png?"),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
        let signature = url.rsplit("X-Amz-Signature=").next().unwrap();
        assert_eq!(signature.len(), 64);
        assert!(!url.contains("wJalrXUtnFEMI"), "the secret never leaks");
        assert_eq!(
            urls.resolve("https://cdn.example/x.png"),
            "https://cdn.example/x.png"
        );
    }

    #[test]
    fn plain_and_as_is() {
        let plain = ImageUrls::Plain {
            base: "https://cdn.example/img/".into(),
        };
        assert_eq!(plain.resolve("/a/b.png"), "https://cdn.example/img/a/b.png");
        assert_eq!(ImageUrls::AsIs.resolve("a/b.png"), "a/b.png");
        assert_eq!(ImageUrls::AsIs.resolve("HTTPS://x/y"), "HTTPS://x/y");
    }

    #[test]
    fn bad_configuration_is_an_error_not_a_panic() {
        let mut c = minio();
        c.endpoint = "not a url".into();
        assert!(Presigner::new(&c).is_err());
        let mut c = minio();
        c.expires = Duration::from_secs(8 * 24 * 3600);
        assert!(Presigner::new(&c).is_err());
    }
}
