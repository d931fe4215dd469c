# What a legacy host's Puppet code does with the exported certificates, reduced to the part
# the tests check: every certificate's files written exactly as looked up.
#
# The directory comes from the `fleetcert_out` fact (FACTER_fleetcert_out in the test).
$out = $facts['fleetcert_out']

# The whole hash, as a profile that installs every certificate would read it.
$certs = lookup('fleetcert_certs', Hash[String, Hash], 'first', {})
$certs.each |String $name, Hash $cert| {
  file { "${out}/${name}.cert.pem":
    ensure  => file,
    content => $cert['cert_contents'],
    mode    => '0644',
  }
  file { "${out}/${name}.chain.pem":
    ensure  => file,
    content => $cert['chain_contents'],
    mode    => '0644',
  }
  file { "${out}/${name}.fullchain.pem":
    ensure  => file,
    content => $cert['full_chain_contents'],
    mode    => '0644',
  }
  file { "${out}/${name}.key.pem":
    ensure    => file,
    content   => Sensitive($cert['key_contents']),
    mode      => '0600',
    show_diff => false,
  }
}

# One value by dotted path, the form `lookup()` in an existing class uses: this works only
# because no key in the file contains a dot.
file { "${out}/main.key-by-path.pem":
  ensure    => file,
  content   => Sensitive(lookup('fleetcert_certs.main.key_contents')),
  mode      => '0600',
  show_diff => false,
}
