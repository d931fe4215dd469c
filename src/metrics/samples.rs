//! The samples one run makes from its [`Update`]: its command's, its certificates', its
//! publication's.

use super::{CertFacts, Probes, PublishFacts, RESULTS, Sample, Update, family};

/// The samples `update` itself makes.
pub(super) fn new_samples(update: &Update) -> Vec<Sample> {
    let mut samples = Vec::new();
    let scope = update.scope.label();
    let run = &update.run;
    for (name, value) in [
        ("fleetcert_command_last_run_timestamp_seconds", run.started),
        (
            "fleetcert_command_duration_seconds",
            run.duration.as_secs_f64(),
        ),
        ("fleetcert_command_exit_code", f64::from(run.exit_code)),
    ] {
        samples.push(Sample::new(
            family(name),
            &[("command", run.command), scope],
            value,
        ));
    }
    for cert in update.certs.iter().flatten() {
        cert_samples(&mut samples, scope, cert);
    }
    if let Some(publication) = &update.publication {
        publish_samples(&mut samples, scope, run.started, publication);
    }
    samples
}

fn cert_samples(samples: &mut Vec<Sample>, scope: (&'static str, &str), facts: &CertFacts) {
    let labels = [scope, ("cert", facts.cert.as_str())];
    let mut push = |name: &str, extra: &[(&str, &str)], value: f64| {
        let mut all = labels.to_vec();
        all.extend_from_slice(extra);
        samples.push(Sample::new(family(name), &all, value));
    };
    if let Some(installed) = &facts.installed {
        push(
            "fleetcert_certificate_expiry_timestamp_seconds",
            &[],
            installed.expiry,
        );
        push(
            "fleetcert_certificate_issued_timestamp_seconds",
            &[],
            installed.issued,
        );
        push(
            "fleetcert_certificate_renewal_window_seconds",
            &[],
            installed.renewal_window,
        );
        push(
            "fleetcert_certificate_renewal_timestamp_seconds",
            &[("rule", installed.renews_by)],
            installed.renews,
        );
        push(
            "fleetcert_certificate_info",
            &[
                ("name", &installed.name),
                ("key_type", &installed.key_type),
                ("serial", &installed.serial),
                ("ca", &installed.ca),
                (
                    "fallback",
                    if installed.fallback { "true" } else { "false" },
                ),
            ],
            1.0,
        );
    }
    push(
        "fleetcert_certificate_due",
        &[("reason", facts.due.unwrap_or("none"))],
        if facts.due.is_some() { 1.0 } else { 0.0 },
    );
    for (name, pending) in [
        ("fleetcert_certificate_pending", facts.pending),
        ("fleetcert_certificate_reload_pending", facts.reload_pending),
    ] {
        if let Some(pending) = pending {
            push(name, &[], if pending { 1.0 } else { 0.0 });
        }
    }
    let Probes::Probed(probes) = &facts.probes else {
        return;
    };
    for probe in probes {
        let target = [("target", probe.target.as_str())];
        for result in RESULTS {
            push(
                "fleetcert_certificate_probe_result",
                &[target[0], ("result", result)],
                if *result == probe.result { 1.0 } else { 0.0 },
            );
        }
        push(
            "fleetcert_certificate_probe_timestamp_seconds",
            &target,
            probe.at,
        );
        if let Some(expiry) = probe.served_expiry {
            push(
                "fleetcert_certificate_probe_expiry_timestamp_seconds",
                &target,
                expiry,
            );
        }
    }
}

fn publish_samples(
    samples: &mut Vec<Sample>,
    scope: (&'static str, &str),
    started: f64,
    facts: &PublishFacts,
) {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let counts = [
        ("fleetcert_publish_timestamp_seconds", started),
        ("fleetcert_publish_serial", f64::from(facts.serial)),
        ("fleetcert_publish_records", facts.records as f64),
        ("fleetcert_publish_hosts", facts.hosts as f64),
    ];
    for (name, value) in counts {
        samples.push(Sample::new(family(name), &[scope], value));
    }
    for server in &facts.servers {
        let labels = [scope, ("server", server.server.as_str())];
        if let Some(seconds) = server.seconds {
            samples.push(Sample::new(
                family("fleetcert_publish_server_propagation_seconds"),
                &labels,
                seconds,
            ));
        }
        samples.push(Sample::new(
            family("fleetcert_publish_server_lagging"),
            &labels,
            if server.seconds.is_none() { 1.0 } else { 0.0 },
        ));
    }
}
