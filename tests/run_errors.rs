//! `weir run` refuses to start with a message that says what to fix. These checks happen before
//! any socket is opened, so they run without root.

use std::process::Command;

fn run_with(dataplane: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("weir-run-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.toml", dataplane.len()));
    let policy = "[gateway]\nue_pools = [\"10.45.0.0/16\"]\n\n";
    std::fs::write(&path, format!("{policy}{dataplane}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_interface_is_named() {
    let (ok, err) = run_with(
        "[dataplane]\nue_interface = \"weir-nope0\"\ninternet_interface = \"weir-nope1\"\nreport_listen = \"\"\n",
    );
    assert!(!ok);
    assert!(err.contains("interface weir-nope0 not found"), "{err}");
}

#[test]
fn a_core_that_does_not_exist_is_named() {
    let (ok, err) = run_with(
        "[dataplane]\nue_interface = \"lo\"\ninternet_interface = \"weir-nope1\"\ncores = [4000]\nreport_listen = \"\"\n",
    );
    assert!(!ok);
    assert!(err.contains("core 4000 does not exist"), "{err}");
}

#[test]
fn the_dataplane_table_is_checked() {
    let (ok, err) = run_with("[dataplane]\nmode = \"bridge\"\nue_interface = \"a\"\n");
    assert!(!ok);
    assert!(
        err.contains("needs ue_interface and internet_interface"),
        "{err}"
    );
    let (ok, err) = run_with("");
    assert!(!ok);
    assert!(err.contains("no [dataplane] table"), "{err}");
}
