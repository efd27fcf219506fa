"""The configuration file as the service first writes it, and the machine-wide template.

1. ``DEFAULT_CONFIG``: every setting, commented out with its default value, in French for IT;
2. ``write_default`` creates the user's file with that text (0600, folder 0700) when it is missing;
3. ``machine_template`` turns the same text into the file the installers ship for the whole machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from helper.extension_ids import CHROMIUM_ORIGINS

DEFAULT_PORT = 51789

def _toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


DEFAULT_CONFIG = f"""\
# Configuration de sidep-helper.
# Ce fichier est créé au premier lancement ; les valeurs en commentaire sont les valeurs par défaut.
# Après modification, redémarrez le service (ou la commande en cours).
# Un réglage fixé par la configuration du poste (/etc/sidep-helper/config.toml sous Linux,
# %ProgramData%\\sidep-helper\\config.toml sous Windows) l'emporte sur ce fichier.

# Port d'écoute de l'API locale (127.0.0.1 et ::1 uniquement).
# port = {DEFAULT_PORT}

# Dossiers surveillés en plus du dossier Téléchargements et des dossiers locaux de Thunderbird.
# watch = ["D:/Messagerie/Certificats"]

# Surveiller le dossier Téléchargements de l'utilisateur (fichiers .eml et PDF enregistrés depuis le webmail).
# watch_downloads = true

# Surveiller les dossiers de courrier des profils Thunderbird trouvés sur le poste (lecture seule).
# watch_thunderbird = true

# Expéditeurs dont les messages deviennent des certificats (adresses exactes).
# trusted_senders = ["noreply.sidep@enovacom.easycrypt.fr"]

# Expéditeurs autorisés à TRANSFÉRER un certificat en pièce jointe (message .eml joint) : adresses
# exactes, ou "@domaine" pour toutes les adresses d'un domaine. Vide par défaut : un certificat
# transféré est alors mis en quarantaine (untrusted_forward), car celui qui transfère peut en
# réécrire le contenu. N'ajoutez que des boîtes de votre laboratoire.
# trusted_forwarders = ["secretariat@labo.mssante.fr", "@labo.mssante.fr"]

# Vérifier les codes-barres signés du certificat PDF (2D-DOC et DCC européen) : signature et
# concordance avec le courriel. Voir docs/verification.md.
# verify_barcodes = true

# Dossier de la liste de confiance des codes-barres (clés publiques 2D-DOC et certificats DCC),
# mis à jour par le service informatique. Par défaut : le dossier « liste-de-confiance » à côté de
# ce fichier.
# barcode_trust_list = "C:/ProgramData/sidep-helper/liste-de-confiance"

# Imprimante : nom de la file d'impression ; vide = imprimante par défaut du système.
# printer = ""

# Imprimantes que l'extension peut choisir (noms des files d'impression), en plus de « printer ».
# Liste vide = seule l'imprimante ci-dessus (ou, à défaut, celle par défaut du système) est utilisée.
# printers = ["Accueil", "Secrétariat"]

# Durée de conservation des certificats, en jours après leur intégration dans SI-DEP.
# Un certificat déjà plus ancien à son arrivée n'est pas conservé (compté « expiré »).
# retention_days = 90

# Taille maximale, en Mo, des messages mis en quarantaine (les plus anciens sont supprimés au-delà).
# quarantine_max_mb = 500

# Extensions Chrome/Edge autorisées à interroger le service (par défaut : l'extension sidep-helper,
# identifiant fixe). Les extensions Firefox et Thunderbird (moz-extension://<UUID>, UUID tiré au hasard
# par profil) sont acceptées dès que l'origine est bien formée : le jeton les protège.
# allowed_origins = {_toml_list(CHROMIUM_ORIGINS)}

# Accepter toute extension Chrome/Edge (n'importe quel identifiant chrome-extension://) : déconseillé.
# allow_any_extension_origin = false

# Boîtes aux lettres lues directement en IMAP (plusieurs blocs possibles). Exemple :
# [[sources.imap]]
# name = "bal-labo"                 # nom affiché dans « status »
# host = "imap.mssante.fr"
# port = 143
# tls = "starttls"                  # ou "implicit" (port 993) ; TLS 1.2 au minimum
# ca_file = "C:/IGC-Sante/ac-racines.pem"   # autorités du serveur ; vide = magasin du système
# folders = ["INBOX"]
# cert_file = "C:/IGC-Sante/bal.crt"         # certificat client (connexion SASL EXTERNAL)
# key_file = "C:/IGC-Sante/bal.key"          # clé privée : droits 0600 obligatoires
# user = ""                                   # ou identifiant + fichier de mot de passe (0600)
# password_file = ""
# poll_seconds = 60                 # relève périodique, en plus d'IDLE quand le serveur le propose
# move_processed_to = ""            # dossier où déplacer les certificats lus ; vide = ne rien déplacer

# Noms des sites affichés à côté de leur FINESS géographique.
# [sites]
# "750712184" = "Site de Paris 12e"
"""


def write_default(path: Path) -> bool:
    """Create the configuration file with commented defaults if it does not exist yet."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(DEFAULT_CONFIG)
    return True


def machine_template() -> str:
    """The commented machine-wide file the installers ship (every setting, none enforced yet)."""
    body = DEFAULT_CONFIG.split("\n# port =", 1)[0].count("\n")
    lines = DEFAULT_CONFIG.splitlines(keepends=True)[body - 1:]
    return (
        "# Configuration de sidep-helper pour tout le poste (tous les utilisateurs).\n"
        "# Un réglage décommenté ici est IMPOSÉ : la configuration d'un utilisateur ne peut ni le changer\n"
        "# ni le compléter (une liste fixée ici, comme trusted_senders ou watch, ne peut pas être étendue).\n"
        "# « sidep-helper config » indique pour chaque réglage le fichier d'où vient sa valeur.\n"
        "# Après modification, chaque utilisateur doit relancer le service (ou se reconnecter).\n"
        + "".join(lines)
    )
