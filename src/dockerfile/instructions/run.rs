//! `RUN [--mount=…] [--network=…] [--security=…] [--device=…] command`:
//! the command, its heredoc scripts and its per-run options.
//!
//! The mount grammar is in `run_mount`; this module must not import the
//! lexer (the command line is the container shell's business) nor the
//! runner that executes it.

use super::cmdline::{inline_files, ShellInlineFile, ShellOrExec};
use super::go::parse_bool;
use super::run_mount::{csv_fields, parse_mount, Mount};
use super::{Expander, InstructionError, Meta, Request};
use crate::dockerfile::error::{Error, Result};
use crate::dockerfile::location::Range;
use crate::dockerfile::suggest::suggest;

/// `--network`: which network the command sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NetworkMode {
    /// The builder's default network.
    #[default]
    Default,
    /// No network at all.
    None,
    /// The host's network namespace (needs an entitlement).
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Default => "default",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// `--security`: whether the command runs sandboxed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SecurityMode {
    #[default]
    Sandbox,
    /// Full privileges (needs an entitlement).
    Insecure,
}

impl SecurityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityMode::Sandbox => "sandbox",
            SecurityMode::Insecure => "insecure",
        }
    }
}

/// `--device=name[,required]`: a CDI device to expose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub required: bool,
}

/// A RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub meta: Meta,
    pub cmd: ShellOrExec,
    /// Heredoc bodies, written as files or fed to the shell by the runner.
    pub heredocs: Vec<ShellInlineFile>,
    /// The `--mount` values as written, re-read by [`Run::expand`].
    pub mount_specs: Vec<String>,
    /// One per `--mount`. Until [`Run::expand`] runs only `from` is filled
    /// (enough to find the stages the command depends on); afterwards every
    /// option is.
    pub mounts: Vec<Mount>,
    pub network: NetworkMode,
    pub security: SecurityMode,
    pub devices: Vec<Device>,
    /// Names of the flags given, first use first (for lint rules).
    pub flags_used: Vec<String>,
}

pub(crate) fn parse_run(req: &mut Request) -> Result<Run> {
    // Declared in the order BuildKit's hooks register them.
    let device = req.flags.add_strings("device");
    let mount = req.flags.add_strings("mount");
    let network = req
        .flags
        .add_string("network", NetworkMode::Default.as_str());
    let security = req
        .flags
        .add_string("security", SecurityMode::Sandbox.as_str());
    req.parse_flags()?;
    let location = req.location();

    let devices = req
        .flags
        .values(device)
        .iter()
        .map(|d| parse_device(d).map_err(|e| Error::new(e, location)))
        .collect::<Result<Vec<_>>>()?;
    let mount_specs = req.flags.values(mount).to_vec();
    let mounts = mount_specs
        .iter()
        .map(|spec| parse_mount(spec, None, location))
        .collect::<Result<Vec<_>>>()?;
    let network = match req.flags.value(network) {
        "default" => NetworkMode::Default,
        "none" => NetworkMode::None,
        "host" => NetworkMode::Host,
        other => return Err(req.fail(InstructionError::InvalidNetwork(other.to_string()))),
    };
    let security = match req.flags.value(security) {
        "sandbox" => SecurityMode::Sandbox,
        "insecure" => SecurityMode::Insecure,
        other => return Err(req.fail(InstructionError::InvalidSecurity(other.to_string()))),
    };

    Ok(Run {
        meta: req.meta(),
        cmd: ShellOrExec::from_args(&req.args, req.json()),
        heredocs: inline_files(req),
        mount_specs,
        mounts,
        network,
        security,
        devices,
        flags_used: req.flags.used(),
    })
}

impl Run {
    /// Reads every `--mount` again with the stage's expander, filling all
    /// mount options and checking them. Nothing else in RUN is expanded by
    /// the frontend.
    pub fn expand(&mut self, f: &mut Expander<'_>) -> Result<()> {
        self.mounts = self
            .mount_specs
            .iter()
            .map(|spec| parse_mount(spec, Some(&mut *f), self.meta.location))
            .collect::<Result<Vec<_>>>()?;
        Ok(())
    }

    /// The instruction's location, for errors the runner reports.
    pub fn location(&self) -> Range {
        self.meta.location
    }
}

/// Parses one `--device` value: a device name (as the first bare field or
/// `name=`), optionally `required[=bool]`.
pub fn parse_device(spec: &str) -> std::result::Result<Device, InstructionError> {
    let fields = csv_fields(spec).map_err(InstructionError::DeviceCsv)?;
    let mut device = Device::default();
    for field in fields {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v)),
            None => (field.to_lowercase(), None),
        };
        match (key.as_str(), value) {
            ("required", None) => device.required = true,
            // CDI names may contain `=`, so an unrecognised first field is
            // the name whatever it looks like.
            (_, v)
                if device.name.is_empty()
                    && (v.is_none() || !matches!(key.as_str(), "name" | "required")) =>
            {
                device.name = field.clone();
            }
            (_, None) => return Err(InstructionError::NotKeyValue(field.clone())),
            ("name", Some(v)) => {
                if !device.name.is_empty() {
                    return Err(InstructionError::DeviceNameTwice(device.name));
                }
                device.name = v.to_string();
            }
            ("required", Some(v)) => {
                device.required = parse_bool(v).ok_or_else(|| InstructionError::InvalidValue {
                    key: key.clone(),
                    value: v.to_string(),
                })?;
            }
            (_, Some(_)) => {
                return Err(InstructionError::UnknownKey {
                    suggestion: suggest(&key, &["name", "required"], true),
                    key: key.clone(),
                    field: field.clone(),
                })
            }
        }
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{parse_instruction, Instruction, MountType};
    use super::*;
    use crate::dockerfile::node::{Heredoc, Node};

    fn run(n: &Node) -> Run {
        match parse_instruction(n).unwrap() {
            Instruction::Run(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_run_has_defaults() {
        let r = run(&node("run", &[], &["echo hello"]));
        assert_eq!(r.cmd, ShellOrExec::Shell("echo hello".into()));
        assert!(r.mounts.is_empty() && r.devices.is_empty() && r.heredocs.is_empty());
        assert_eq!(r.network, NetworkMode::Default);
        assert_eq!(r.security, SecurityMode::Sandbox);
        assert!(r.flags_used.is_empty());
    }

    #[test]
    fn exec_form() {
        let r = run(&json_node("run", &[], &["ls", "/"]));
        assert_eq!(r.cmd, ShellOrExec::Exec(vec!["ls".into(), "/".into()]));
        let r = run(&json_node("run", &[], &["<<EOF"]));
        assert_eq!(r.cmd.args(), ["<<EOF"]);
    }

    #[test]
    fn heredocs_are_kept_unchomped() {
        let mut n = node("run", &[], &["<<-EOF"]);
        n.heredocs = vec![Heredoc {
            name: "EOF".into(),
            content: "\techo test\n".into(),
            chomp: true,
            expand: true,
            file_descriptor: 0,
        }];
        let r = run(&n);
        assert_eq!(r.cmd.args(), ["<<-EOF"]);
        assert_eq!(
            r.heredocs,
            [ShellInlineFile {
                name: "EOF".into(),
                data: "\techo test\n".into(),
                chomp: true
            }]
        );
    }

    #[test]
    fn flags_used_lists_given_flags() {
        let r = run(&node(
            "run",
            &["--mount=type=tmpfs,target=/foo/"],
            &["echo hello"],
        ));
        assert_eq!(r.flags_used, ["mount"]);
        let r = run(&node(
            "run",
            &["--network=none", "--mount=target=/a", "--mount=target=/b"],
            &["x"],
        ));
        assert_eq!(r.flags_used, ["network", "mount"]);
        assert_eq!(r.mount_specs, ["target=/a", "target=/b"]);
    }

    #[test]
    fn network_modes() {
        for (v, m) in [
            ("default", NetworkMode::Default),
            ("none", NetworkMode::None),
            ("host", NetworkMode::Host),
        ] {
            assert_eq!(
                run(&node("run", &[&format!("--network={v}")], &["x"])).network,
                m
            );
        }
        assert_eq!(
            parse_err(&node("run", &["--network=bridge"], &["x"])),
            "invalid network mode \"bridge\""
        );
        assert_eq!(
            parse_err(&node("run", &["--network=HOST"], &["x"])),
            "invalid network mode \"HOST\""
        );
        assert_eq!(
            parse_err(&node("run", &["--network"], &["x"])),
            "missing a value on flag: --network"
        );
    }

    #[test]
    fn security_modes() {
        let r = run(&node("run", &["--security=insecure"], &["x"]));
        assert_eq!(r.security, SecurityMode::Insecure);
        let r = run(&node("run", &["--security=sandbox"], &["x"]));
        assert_eq!(r.security, SecurityMode::Sandbox);
        assert_eq!(
            parse_err(&node("run", &["--security=privileged"], &["x"])),
            "security \"privileged\" is not valid"
        );
    }

    #[test]
    fn unknown_and_duplicate_run_flags() {
        assert_eq!(
            parse_err(&node("run", &["--mnt=type=cache"], &["x"])),
            "unknown flag: --mnt (did you mean mount?)"
        );
        assert_eq!(
            parse_err(&node("run", &["--network=none", "--network=host"], &["x"])),
            "duplicate flag specified: --network"
        );
    }

    #[test]
    fn mounts_read_lazily() {
        let n = node(
            "run",
            &[
                "--mount=type=cache,target=/c,from=base",
                "--mount=type=secret,id=s",
            ],
            &["x"],
        );
        let mut r = run(&n);
        // Before expansion only `from` is known.
        assert_eq!(r.mounts.len(), 2);
        assert_eq!(r.mounts[0].from, "base");
        assert_eq!(r.mounts[0].mount_type, MountType::Bind);
        r.expand(&mut vars(&[])).unwrap();
        assert_eq!(r.mounts[0].mount_type, MountType::Cache);
        assert_eq!(r.mounts[0].target, "/c");
        assert_eq!(r.mounts[1].mount_type, MountType::Secret);
        assert_eq!(r.mounts[1].cache_id, "s");
    }

    #[test]
    fn mount_errors_surface_at_the_right_time() {
        // Parse time: CSV and variables in `from`.
        assert_eq!(
            parse_err(&node("run", &["--mount=from=$X"], &["x"])),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
        assert_eq!(
            parse_err(&node("run", &["--mount="], &["x"])),
            "failed to parse csv mounts: EOF"
        );
        // Dispatch time: everything else.
        let mut r = run(&node("run", &["--mount=type=$T,target=/t"], &["x"]));
        let err = r.expand(&mut vars(&[("T", "volume")])).unwrap_err();
        assert_eq!(err.to_string(), "unsupported mount type \"volume\"");
        assert_eq!(err.line(), Some(3));
        r.expand(&mut vars(&[("T", "tmpfs")])).unwrap();
        assert_eq!(r.mounts[0].mount_type, MountType::Tmpfs);
    }

    #[test]
    fn devices() {
        let r = run(&node(
            "run",
            &["--device=vendor.com/gpu=all,required", "--device=name=x"],
            &["x"],
        ));
        assert_eq!(
            r.devices,
            [
                Device {
                    name: "vendor.com/gpu=all".into(),
                    required: true
                },
                Device {
                    name: "x".into(),
                    required: false
                }
            ]
        );
        assert_eq!(
            parse_err(&node("run", &["--device=a,name=b"], &["x"])),
            "device name already set to a"
        );
    }

    #[test]
    fn device_grammar() {
        let d = |s: &str| parse_device(s);
        let dev = |name: &str, required| Device {
            name: name.into(),
            required,
        };
        assert_eq!(
            d("vendor1.com/device=foo"),
            Ok(dev("vendor1.com/device=foo", false))
        );
        assert_eq!(
            d("vendor1.com/device"),
            Ok(dev("vendor1.com/device", false))
        );
        assert_eq!(
            d("vendor1.com/device=foo,required"),
            Ok(dev("vendor1.com/device=foo", true))
        );
        assert_eq!(
            d("vendor1.com/device=foo,required=true"),
            Ok(dev("vendor1.com/device=foo", true))
        );
        assert_eq!(
            d("vendor1.com/device=foo,required=false"),
            Ok(dev("vendor1.com/device=foo", false))
        );
        assert_eq!(
            d("name=vendor1.com/device=foo"),
            Ok(dev("vendor1.com/device=foo", false))
        );
        assert_eq!(d("required,a"), Ok(dev("a", true)));
        assert_eq!(d("name"), Ok(dev("name", false)));
        assert_eq!(
            d("vendor1.com/device=foo,name=vendor2.com/device=bar")
                .unwrap_err()
                .to_string(),
            "device name already set to vendor1.com/device=foo"
        );
        assert_eq!(
            d("a,b").unwrap_err().to_string(),
            "invalid field 'b' must be a key=value pair"
        );
        assert_eq!(
            d("a,requird=1").unwrap_err().to_string(),
            "unexpected key 'requird' in 'requird=1' (did you mean required?)"
        );
        assert_eq!(
            d("a,required=maybe").unwrap_err().to_string(),
            "invalid value for required: maybe"
        );
        assert_eq!(
            d("").unwrap_err().to_string(),
            "failed to parse csv devices: EOF"
        );
    }
}
