// ANCHOR: names
use std::error::Error;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The common names of the certificates: all different, as gRPC C++
/// clients (pyarrow's among them) refuse a chain where a name repeats.
pub const CA_NAME: &str = "Flight Cookbook Test CA";
pub const SERVER_NAME: &str = "Flight Cookbook Server";
pub const CLIENT_NAME: &str = "Flight Cookbook Client";

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A key pair and a certificate for it, signed by `issuer`, both as PEM.
fn leaf(
    common_name: &str,
    hosts: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let hosts: Vec<String> = hosts.iter().map(|host| host.to_string()).collect();
    let mut params = CertificateParams::new(hosts)?;
    params.distinguished_name = name(common_name);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let certificate = params.signed_by(&key, issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}
// ANCHOR_END: names

// ANCHOR: write

/// Writes `text` to `dir/file`. On Unix only the owner may read a private
/// key; elsewhere a new file gets the permissions of its folder.
fn write(dir: &Path, file: &str, text: &str) -> std::io::Result<()> {
    let path = dir.join(file);
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if file.ends_with(".key") { 0o600 } else { 0o644 });
    }
    let mut out = options.open(&path)?;
    out.write_all(text.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}
// ANCHOR_END: write

// ANCHOR: certificates

/// Makes a certificate authority, a server certificate for `localhost` and
/// `127.0.0.1` and a client certificate, both signed by the authority, and
/// writes them with their keys to `dir`.
pub fn write_certificates(dir: &Path) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(CA_NAME);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_certificate = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let hosts = ["localhost", "127.0.0.1"];
    let server = leaf(
        SERVER_NAME,
        &hosts,
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    )?;
    let client = leaf(
        CLIENT_NAME,
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?;

    write(dir, "ca.pem", &ca_certificate.pem())?;
    write(dir, "server.pem", &server.0)?;
    write(dir, "server.key", &server.1)?;
    write(dir, "client.pem", &client.0)?;
    write(dir, "client.key", &client.1)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "certs".to_string());
    write_certificates(Path::new(&dir))
}
// ANCHOR_END: certificates
