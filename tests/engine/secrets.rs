//! The user's access token never reaches the data dir.

use base64::Engine as _;
use taskflow::testing::TempDataDir;
use taskflow::{AccessToken, UserContext, UserId};

use crate::support::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_token_is_never_written_to_the_data_dir() {
    const TOKEN: &str = "tok-7f3a9c1e-SECRET-d41d8cd98f00b204";
    let dir = TempDataDir::new();
    let flow = fast(dir.builder()).build().await.unwrap();
    let user = UserContext::new(UserId::new("ann@example.com").unwrap())
        .with_email("ann@example.com")
        .with_access_token(AccessToken::new(TOKEN));
    let mut s = Script::new("secret-token");
    s.steps = 3;
    let run = flow.as_user(&user).start(scripted, s).await.unwrap();
    flow.as_user(&user).wait(&run).await.unwrap();
    flow.shutdown().await.unwrap();

    // Positive control: the handler really had the token.
    assert_eq!(*probe("secret-token").tokens.lock().unwrap(), [TOKEN]);

    let forms = [
        TOKEN.as_bytes().to_vec(),
        base64::engine::general_purpose::STANDARD
            .encode(TOKEN)
            .into_bytes(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(TOKEN)
            .into_bytes(),
        hex(TOKEN.as_bytes()).into_bytes(),
        hex(TOKEN.as_bytes()).to_uppercase().into_bytes(),
    ];
    let mut files = 0;
    let mut stack = vec![dir.path().to_owned()];
    let mut owner_seen = false;
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
                continue;
            }
            files += 1;
            let bytes = std::fs::read(entry.path()).unwrap();
            owner_seen |= bytes.windows(15).any(|w| w == b"ann@example.com");
            for form in &forms {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form.as_slice()),
                    "{} holds the token (as {:?})",
                    entry.path().display(),
                    String::from_utf8_lossy(form)
                );
            }
        }
    }
    assert!(files > 0);
    assert!(
        owner_seen,
        "control: the search does find what was written (the owner id)"
    );
}
