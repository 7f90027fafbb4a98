//! The README's "Running the pieces by hand", tried as a new user would: the commands of
//! its first block run as written (each `cargo run -p <package> --` replaced by the
//! binary cargo built for it), from a folder holding a copy of `deploy/` just as the
//! repository does, on the examples' own loopback ports; then the README's filing (its
//! JSON body as written) goes to 31's portal and the case is followed to its decision,
//! and the README's requirements questions (一次告知) are asked as written; its joint
//! filing (多地联办) is filed and followed to its approval at both regions.
//! Once, all three nodes wrote the default trail `deploy/node-audit.log` and two of them
//! refused to start.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tongban_kit::testing::{cli_binary, eventually};
use tongban_node::portal_client::PortalClient;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn readme() -> String {
    std::fs::read_to_string(repository().join("README.md")).unwrap()
}

/// The body of the first fenced block of `lang` after `heading` in the README.
fn block_after(readme: &str, heading: &str, lang: &str) -> String {
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("{heading}"))..];
    let fence = format!("```{lang}\n");
    let start = section.find(&fence).unwrap() + fence.len();
    let len = section[start..].find("```").unwrap();
    section[start..start + len].to_owned()
}

/// A README command line as argv, with `cargo run -p <package> --` turned into the
/// binary cargo built for that package.
fn as_built(line: &str) -> Option<Vec<String>> {
    let line = line.split('#').next().unwrap().trim();
    if line.is_empty() {
        return None;
    }
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let ["cargo", "run", "-p", package, "--", ..] =
        words.iter().map(String::as_str).collect::<Vec<_>>()[..]
    else {
        panic!("not a `cargo run -p <package> --` line: {line}");
    };
    let binary = match package {
        "tongban-cli" => "tongban",
        other => other,
    };
    let bin_dir = cli_binary().parent().unwrap().to_owned();
    let mut argv = vec![bin_dir.join(binary).display().to_string()];
    argv.extend(words[5..].iter().cloned());
    Some(argv)
}

/// The started members, killed when the test ends however it ends.
struct Members(Vec<Child>);

impl Drop for Members {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A copy of the repository's `deploy/` (its tracked files: no PKI, no state) in `root`.
fn copy_deploy(root: &Path) {
    let listed = Command::new("git")
        .args(["ls-files", "deploy"])
        .current_dir(repository())
        .output()
        .unwrap();
    assert!(listed.status.success());
    for file in String::from_utf8(listed.stdout).unwrap().lines() {
        let to = root.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repository().join(file), &to).unwrap();
    }
}

async fn ready(admin: &str) {
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(60), &format!("{admin} ready"), || {
        let client = client.clone();
        async move {
            let answer = client.get(format!("{admin}/readyz")).send().await.ok()?;
            answer.status().is_success().then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_start_as_the_readme_says_and_take_a_filing() {
    tongban_runtime::trust::tls::install_crypto_provider();
    let root = tempfile::tempdir().unwrap();
    copy_deploy(root.path());
    let readme = readme();
    let commands: Vec<Vec<String>> = block_after(&readme, "## Running the pieces by hand", "sh")
        .lines()
        .filter_map(as_built)
        .collect();
    assert!(
        commands.len() >= 5,
        "certs, the gateway and three nodes: {commands:?}"
    );

    // The first command (the PKI) runs to its end; the others are members.
    let certs = Command::new(&commands[0][0])
        .args(&commands[0][1..])
        .current_dir(root.path())
        .status()
        .unwrap();
    assert!(certs.success(), "{:?}", commands[0]);
    let mut members = Members(Vec::new());
    for argv in &commands[1..] {
        let name = argv[0].rsplit('/').next().unwrap().to_owned();
        let log =
            std::fs::File::create(root.path().join(format!("{name}-{}.log", members.0.len())))
                .unwrap();
        members.0.push(
            Command::new(&argv[0])
                .args(&argv[1..])
                .current_dir(root.path())
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    for admin in ["7080", "9011", "9031", "9044"] {
        ready(&format!("http://127.0.0.1:{admin}")).await;
    }
    for (argv, child) in commands[1..].iter().zip(&mut members.0) {
        assert!(child.try_wait().unwrap().is_none(), "{argv:?} exited");
    }

    // The README's filing, its body as written.
    let curl = block_after(&readme, "File an application at a node's portal", "sh");
    let body = &curl[curl.find("-d '").unwrap() + 4..];
    let filing: Value = serde_json::from_str(&body[..body.find('\'').unwrap()]).unwrap();
    let portal = PortalClient::new("http://127.0.0.1:8031");
    let receipt = portal.file(&filing).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    let token = receipt.body["status_token"].as_str().unwrap().to_owned();
    let decided = eventually(Duration::from_secs(60), "the case decided", || {
        let (portal, case, token) = (&portal, &case, &token);
        async move {
            let status = portal.status_with_token(case, token).await.ok()?;
            (status.body["stage"] == "approved").then_some(status.body)
        }
    })
    .await;
    // The README's requirements questions, as written: the notice, then for the person.
    let asked = block_after(&readme, "Before filing, a citizen", "sh").replace("\\\n", " ");
    let mut questions = 0;
    for curl in asked.lines().filter(|l| l.starts_with("curl ")) {
        let url = curl
            .split_whitespace()
            .find(|w| w.starts_with("localhost:8031"))
            .unwrap();
        let path = url.trim_start_matches("localhost:8031");
        let answer = match curl.find("-d '") {
            None => portal.get(path).await.unwrap(),
            Some(at) => {
                let body = &curl[at + 4..curl.rfind('\'').unwrap()];
                let body: Value = serde_json::from_str(body).unwrap();
                let answer = portal.post_json(path, &body).await.unwrap();
                assert_eq!(
                    answer.body["applicant"]["identity"], "recognized",
                    "{}",
                    answer.body
                );
                answer
            }
        };
        assert_eq!(answer.status, 200, "{curl}: {}", answer.body);
        assert_eq!(
            answer.body["one_thing_id"],
            "medical-treatment-registration"
        );
        questions += 1;
    }
    assert_eq!(questions, 2, "{asked}");

    // Handled in Guangdong (the applicant's insurance region), by its node 44.
    let handling = decided["handling_region"].as_str().unwrap();
    assert!(handling.starts_with("44"), "{decided}");
    assert_eq!(decided["source"], "handling_region", "{decided}");

    // The README's joint filing (多地联办): the transfer out at 31, then the transfer in
    // at 44, one case approved once both parts are.
    let curl = block_after(&readme, "**Joint handling (多地联办).**", "sh");
    let body = &curl[curl.find("-d '").unwrap() + 4..];
    let filing: Value = serde_json::from_str(&body[..body.find('\'').unwrap()]).unwrap();
    let receipt = portal.file(&filing).await.unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    assert_eq!(receipt.body["parts"].as_array().map(Vec::len), Some(2));
    let case = receipt.body["case_number"].as_str().unwrap().to_owned();
    let token = receipt.body["status_token"].as_str().unwrap().to_owned();
    let joint = eventually(Duration::from_secs(90), "the joint case decided", || {
        let (portal, case, token) = (&portal, &case, &token);
        async move {
            let status = portal.status_with_token(case, token).await.ok()?;
            (status.body["stage"] == "approved").then_some(status.body)
        }
    })
    .await;
    let regions: Vec<&str> = joint["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stage"] == "approved")
        .filter_map(|p| p["handling_region"].as_str())
        .collect();
    assert_eq!(regions, ["310115", "440305"], "{joint}");
    for (argv, child) in commands[1..].iter().zip(&mut members.0) {
        assert!(child.try_wait().unwrap().is_none(), "{argv:?} exited");
    }
}
