//! A throwaway CA, made in the test with rcgen, and certificates it signed (PEM).

/// A test CA and certificates it signed.
pub struct Pki {
    /// The CA certificate.
    pub ca: String,
    /// (certificate, key) for 127.0.0.1 and localhost.
    pub server: (String, String),
    /// (certificate, key) of a client.
    pub client: (String, String),
}

#[allow(clippy::new_without_default)]
impl Pki {
    /// A new CA (each call a different one) with a server and a client certificate.
    pub fn new() -> Self {
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "pluribus test CA");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = ca.self_signed(&ca_key).expect("CA");
        let signed = |names: Vec<String>| {
            let params = rcgen::CertificateParams::new(names).expect("params");
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca, &ca_key).expect("cert");
            (cert.pem(), key.serialize_pem())
        };
        Self {
            server: signed(vec!["127.0.0.1".into(), "localhost".into()]),
            client: signed(vec!["pluribus-client".into()]),
            ca: ca.pem(),
        }
    }
}
