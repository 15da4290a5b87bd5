# Least-privilege Vault policy for the Vectabase server's token when
# KEYRING_BACKEND=vault. It covers the default VAULT_TRANSIT_MOUNT "transit"
# and VAULT_TRANSIT_KEY "vectabase"; change the paths if you change those.
#
#   vault policy write vectabase-transit policies/vault/vectabase-transit.hcl
#   vault token create -policy=vectabase-transit -period=24h
#
# The server wraps and unwraps its keysets with the transit key (never field
# data), reads the key's metadata at start to check it exists and supports
# associated data, and may rotate it (`vectabase keys rotate-kek`).

path "transit/encrypt/vectabase" {
  capabilities = ["update"]
}

path "transit/decrypt/vectabase" {
  capabilities = ["update"]
}

path "transit/keys/vectabase" {
  capabilities = ["read"]
}

path "transit/keys/vectabase/rotate" {
  capabilities = ["update"]
}

# Check the token at start and keep a renewable token alive.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
