#!/bin/bash
# Follows README "Run a node on a community server" on this machine; prints a transcript.
set -u
export PYTHONPATH=/work/wt-6   # the console script runs this branch's code
SRC=/work/wt-6
say() { printf '\n### %s\n' "$*"; }
run() { printf '# %s\n' "$*"; eval "$@" 2>&1; local rc=$?; [ $rc -ne 0 ] && echo "[exit $rc]"; return 0; }

say "0. Clean slate (this machine: no systemd running, Debian 12, root)"
run "systemctl is-system-running || true"
rm -rf /var/lib/canopy /etc/canopy /opt/canopy /usr/local/sbin/canopy-admin /var/backups/canopy /tmp/restore-test /tmp/partner /etc/cron.daily/canopy-backup
rm -f /etc/nginx/sites-enabled/canopy /etc/nginx/sites-available/canopy

say "1. Install"
echo "(deviation from step 1: this session may not create a virtualenv, and the project's venv"
echo " interpreter lives under /root, which the canopy user cannot enter. So /opt/canopy/bin/canopy"
echo " is a stand-in for the console script pip would write: Debian's python3.11 running this"
echo " branch's cli:main with the project's already-installed dependencies.)"
run "python3 --version"
run "id canopy || useradd --system --home-dir /var/lib/canopy --shell /usr/sbin/nologin canopy; id canopy"
mkdir -p /opt/canopy/bin
cat > /opt/canopy/bin/canopy <<SH
#!/bin/sh
# stand-in for the pip-generated console script (see the note above)
PYTHONPATH=$SRC:/work/main/.venv/lib/python3.11/site-packages exec /usr/bin/python3.11 -c 'import sys; from cli import main; sys.argv[0] = "canopy"; sys.exit(main())' "\$@"
SH
run "chmod 0755 /opt/canopy/bin/canopy && cat /opt/canopy/bin/canopy && cp $SRC/README.md /opt/canopy/"
run "/opt/canopy/bin/canopy --help | head -1"

say "2. Configure"
run "install -d -m 0755 /etc/canopy && cp $SRC/config.example.toml /etc/canopy/config.toml"
python3 - <<'PY'
p='/etc/canopy/config.toml'
s=open(p).read()
s=s.replace('advertise = []','advertise = ["ws://127.0.0.1:8080/canopy"]',1)
s=s.replace('listen = "127.0.0.1:0"','listen = "127.0.0.1:7421"',1)
s=s.replace('format = "text"','format = "json"',1)
open(p,'w').write(s)
PY
echo "(edited: advertise = [\"ws://127.0.0.1:8080/canopy\"] — nginx without TLS on this test machine, see step 5;"
echo " api listen = \"127.0.0.1:7421\"; log format = \"json\")"
run "grep -nE '^(listen|advertise|format) ' /etc/canopy/config.toml"
run "/opt/canopy/bin/canopy config check /etc/canopy/config.toml"

say "3. Passphrase and identity"
run "(umask 077; head -c 32 /dev/urandom | base64 > /etc/canopy/passphrase); chmod 0400 /etc/canopy/passphrase; ls -l /etc/canopy/passphrase"
cat > /usr/local/sbin/canopy-admin <<'SH'
#!/bin/sh
# Run a canopy command as the service user, with the service's passphrase.
CANOPY_PASSPHRASE="$(cat /etc/canopy/passphrase)" exec runuser -u canopy -- \
    /opt/canopy/bin/canopy --data /var/lib/canopy "$@"
SH
run "chmod 0700 /usr/local/sbin/canopy-admin; cat /usr/local/sbin/canopy-admin"
run "install -d -o canopy -g canopy -m 0700 /var/lib/canopy"
run "canopy-admin init --name 'Amani Legal Aid'"
run "ls -l /var/lib/canopy"

say "4. Run it (systemd is not running here: the unit is checked, and its ExecStart run by hand)"
run "cp $SRC/deploy/canopy.service /etc/systemd/system/canopy.service"
run "systemd-analyze verify --man=no /etc/systemd/system/canopy.service && echo 'unit: ok'"
run "grep '^ExecStart=' /etc/systemd/system/canopy.service"
echo "(LoadCredential= by hand: a credentials directory only the service user can read)"
run "install -d -o canopy -g canopy -m 0500 /run/credentials/canopy.service && install -o canopy -m 0400 /etc/canopy/passphrase /run/credentials/canopy.service/passphrase"
EXEC=$(sed -n 's/^ExecStart=//p' /etc/systemd/system/canopy.service | sed 's#${CREDENTIALS_DIRECTORY}#/run/credentials/canopy.service#')
printf '# runuser -u canopy -- %s  >/tmp/cs/journal.log 2>&1 &\n' "$EXEC"
runuser -u canopy -- $EXEC >/tmp/cs/journal.out 2>/tmp/cs/journal.log &
NODE=$!
sleep 3
run "cat /tmp/cs/journal.out"
run "cat /tmp/cs/journal.log"

say "5. HTTPS in front (nginx)"
run "nginx -v"
run "cp $SRC/deploy/nginx.conf /etc/nginx/sites-available/canopy && ln -s /etc/nginx/sites-available/canopy /etc/nginx/sites-enabled/canopy"
echo "(no public name or certificate here: a self-signed certificate stands in for certbot's)"
run "mkdir -p /etc/letsencrypt/live/canopy.example.org && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=canopy.example.org -keyout /etc/letsencrypt/live/canopy.example.org/privkey.pem -out /etc/letsencrypt/live/canopy.example.org/fullchain.pem 2>/dev/null && echo certificate ready"
run "nginx -t"
echo "(and a plain-HTTP twin on 127.0.0.1:8080 with the same /canopy block, so a local partner can connect without trusting the self-signed certificate)"
sed -n '/location = \/canopy {/,/^    }/p' /etc/nginx/sites-available/canopy > /tmp/cs/block
{ echo 'map $http_upgrade $canopy_connection_upgrade { default upgrade; "" close; }' | sed 's/^/# /' >/dev/null; 
  printf 'server {\n    listen 127.0.0.1:8080;\n    access_log off;\n'; cat /tmp/cs/block; printf '    location / { return 404; }\n}\n'; } > /etc/nginx/sites-available/canopy-test
ln -sf /etc/nginx/sites-available/canopy-test /etc/nginx/sites-enabled/canopy-test
run "nginx -t 2>&1 | tail -1 && (nginx -s reload 2>/dev/null || nginx) && sleep 1 && echo nginx running"
run "curl -si https://127.0.0.1/canopy -k -H 'Host: canopy.example.org' | head -1"
run "curl -si http://127.0.0.1:8080/canopy | head -1"
run "curl -si http://127.0.0.1:8080/metrics | head -1"

say "6. Invite a partner (a second node on this machine plays Pwani Rights Network)"
export CANOPY_PASSPHRASE='partner passphrase for the transcript'
run "/opt/canopy/bin/canopy --data /tmp/partner init --name 'Pwani Rights Network'"
run "canopy-admin invite 2>&1 | cut -c1-80"
CODE=$(canopy-admin invite 2>/dev/null)
run "/opt/canopy/bin/canopy --data /tmp/partner accept '$CODE'"
/opt/canopy/bin/canopy --data /tmp/partner run --listen 127.0.0.1:7502 >/dev/null 2>/tmp/cs/partner.log &
PARTNER=$!
sleep 4
printf '# (partner) canopy run --listen 127.0.0.1:7502 &\n'
printf 'Field guide: keep phones in a bag at checkpoints.\n' > /tmp/cs/guide.md
chmod 644 /tmp/cs/guide.md
run "canopy-admin publish guide /tmp/cs/guide.md --title 'Checkpoint basics' --lang en --to peers"
sleep 3
run "canopy-admin peers"
run "/opt/canopy/bin/canopy --data /tmp/partner guides"

say "7. Backups"
run "install -d -o canopy -g canopy -m 0700 /var/backups/canopy"
cat > /etc/cron.daily/canopy-backup <<'SH'
#!/bin/sh
exec /usr/local/sbin/canopy-admin backup --out /var/backups/canopy/$(date +%F).backup >/dev/null
SH
run "chmod 0700 /etc/cron.daily/canopy-backup && /etc/cron.daily/canopy-backup && ls -l /var/backups/canopy"
run "CANOPY_PASSPHRASE=\"\$(cat /etc/canopy/passphrase)\" /opt/canopy/bin/canopy restore /var/backups/canopy/\$(date +%F).backup --data /tmp/restore-test"
run "CANOPY_PASSPHRASE=\"\$(cat /etc/canopy/passphrase)\" /opt/canopy/bin/canopy restore /var/backups/canopy/\$(date +%F).backup --data /tmp/restore-test"
run "grep -c 'Checkpoint' /var/backups/canopy/*.backup || echo 'no plaintext in the backup'"

say "8. Watch it"
run "canopy-admin status"
run "canopy-admin status --json | head -30"
run "curl -s http://127.0.0.1:7421/healthz; echo"
run "curl -s http://127.0.0.1:7421/metrics | grep -v '^#'"
run "curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:7421/v1/status"
run "tail -n 4 /tmp/cs/journal.log"
run "grep -c -e Checkpoint -e phones -e Pwani -e Amani /tmp/cs/journal.log /tmp/cs/partner.log || echo 'logs: no content or names'"

say "Sneakernet, for when the network is cut"
run "canopy-admin export --for 'Pwani Rights Network' --out /var/backups/canopy/for-pwani.bundle"
run "cp /var/backups/canopy/for-pwani.bundle /tmp/cs/ && /opt/canopy/bin/canopy --data /tmp/partner import /tmp/cs/for-pwani.bundle"

say "Stop (systemctl stop sends SIGTERM)"
CHILD=$(pgrep -P $NODE)   # the canopy process itself, as systemd would signal it
kill -TERM $CHILD $PARTNER; wait $NODE; echo "node exit code $?"; wait $PARTNER
run "tail -n 2 /tmp/cs/journal.log"
run "ls /var/lib/canopy"
rm -f /etc/nginx/sites-enabled/canopy-test /etc/nginx/sites-enabled/canopy; nginx -s stop 2>/dev/null
rm -rf /run/credentials/canopy.service
